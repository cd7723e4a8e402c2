"""The pages that need the app's dependencies (`loadkit sandbox up --deps`):

    GET /api/stock/{id}      reads the product's stock from the database (PostgreSQL, asyncpg)
    GET /api/shipping/{id}   asks the external shipping service for a quote

When a dependency fails these pages fail, as a real app's would: 503 when it cannot be reached or
answers an error, 504 when it does not answer within `DEPENDENCY_TIMEOUT_S`. Without the
dependency configured they answer 503 saying so. Every other page works without them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

DEPENDENCY_TIMEOUT_S = 1.0
_POOL = web.AppKey("db_pool", dict)
_HTTP = web.AppKey("external_http", dict)


def routes(app: web.Application, db_port: int | None, external_port: int | None) -> list[web.RouteDef]:
    app[_POOL] = {"port": db_port, "pool": None, "lock": asyncio.Lock()}
    app[_HTTP] = {"port": external_port, "session": None}
    app.on_cleanup.append(_close)
    return [web.get("/api/stock/{id}", _stock), web.get("/api/shipping/{id}", _shipping)]


def _failed(what: str, exc: BaseException | str, status: int = 503) -> web.Response:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return web.json_response({"error": f"{what}: {detail}"[:300]}, status=status)


async def _pool(app: web.Application) -> Any:
    import asyncpg

    state = app[_POOL]
    async with state["lock"]:
        if state["pool"] is None:
            state["pool"] = await asyncpg.create_pool(
                host="127.0.0.1", port=state["port"], user="loadkit", database="bruno", min_size=0, max_size=4,
                timeout=DEPENDENCY_TIMEOUT_S, command_timeout=DEPENDENCY_TIMEOUT_S)
        return state["pool"]


async def _stock(request: web.Request) -> web.Response:
    import asyncpg

    raw = request.match_info["id"]
    if not raw.isdigit():
        return web.json_response({"error": f"product id {raw!r} is not a number", "field": "id"}, status=400)
    if request.app[_POOL]["port"] is None:
        return _failed("no database", "the sandbox runs without its dependencies (sandbox up --deps)")
    try:
        async with asyncio.timeout(DEPENDENCY_TIMEOUT_S * 2):
            pool = await _pool(request.app)
            row = await pool.fetchrow("SELECT product_id, name, quantity FROM stock WHERE product_id = $1", int(raw))
    except TimeoutError as exc:
        return _failed("database timed out", exc, 504)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _failed("database failed", exc)
    if row is None:
        return web.json_response({"error": f"unknown product id {raw!r}", "field": "id"}, status=404)
    return web.json_response({"id": row["product_id"], "name": row["name"], "in_stock": row["quantity"]})


async def _shipping(request: web.Request) -> web.Response:
    state = request.app[_HTTP]
    if state["port"] is None:
        return _failed("no shipping service", "the sandbox runs without its dependencies (sandbox up --deps)")
    if state["session"] is None:
        state["session"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEPENDENCY_TIMEOUT_S))
    url = f"http://127.0.0.1:{state['port']}/quote/{request.match_info['id']}"
    try:
        async with state["session"].get(url) as answer:
            body = await answer.json(content_type=None)
            if answer.status >= 500:
                return _failed("shipping service failed", f"it answered {answer.status}", 502)
            return web.json_response(body, status=answer.status)
    except TimeoutError as exc:
        return _failed("shipping service timed out", exc, 504)
    except (aiohttp.ClientError, ValueError) as exc:
        return _failed("shipping service failed", exc, 502)


async def _close(app: web.Application) -> None:
    if app[_POOL]["pool"] is not None:
        await app[_POOL]["pool"].close()
    if app[_HTTP]["session"] is not None:
        await app[_HTTP]["session"].close()
