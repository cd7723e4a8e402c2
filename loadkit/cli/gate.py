"""`loadkit gate`: manual gates and rollbacks of a canary's analysis, through `loadkit serve`'s API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from loadkit.cli._options import output_option
from loadkit.errors import AuthError, NotFoundError, NotReadyError, TargetError, UsageError

HOOKS = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion")
TIMEOUT_S = 15.0


def _canary(value: str) -> tuple[str, str]:
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise UsageError(f"{value!r} is not NAMESPACE/NAME", hint="name the Canary as kubectl does, e.g. "
                                                                   "bruno/bruno-site")
    return namespace, name


def _common(f: Any) -> Any:
    f = click.argument("canary", metavar="NAMESPACE/NAME")(f)
    f = click.option("--server", envvar="LOADKIT_SERVER", required=True, metavar="URL",
                     help="loadkit serve's base URL, e.g. http://loadkit.loadkit (or set LOADKIT_SERVER).")(f)
    f = click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
                     help="The server's bearer token (default: LOADKIT_TOKEN).")(f)
    return output_option(help_text="text: one line; json: the gate status.")(f)


@click.group("gate")
def gate() -> None:
    """Approve, halt or roll back a canary's analysis by hand (what flagger-loadtester's /gate/* gave).

    \b
    Gates belong to the canary's open analysis and reset on a new revision; confirm-rollout's
    approval is for the next rollout. Needs the server's bearer token.
    \b
    Examples:
      loadkit gate status bruno/bruno-site --server http://loadkit.loadkit
      loadkit gate approve bruno/bruno-site --server http://loadkit.loadkit --hook confirm-promotion
      loadkit gate halt bruno/bruno-site --server http://loadkit.loadkit --reason "waiting for the DB team"
      loadkit gate rollback bruno/bruno-site --server http://loadkit.loadkit --reason "checkout errors"
    """


@gate.command("approve")
@_common
@click.option("--hook", type=click.Choice(HOOKS), help="Only this gate (default: every gate of the moment).")
@click.option("--reason", default="", help="Why, kept with the gate.")
def approve(canary: str, server: str, token_file: Path | None, output: str, hook: str | None, reason: str) -> None:
    """Let the analysis go on: open its confirm-* gates (with no analysis open: the next rollout)."""
    _show(_call("POST", server, f"/gates/{_path(canary)}/approve", token_file, {"hook": hook, "reason": reason}),
          output)


@gate.command("halt")
@_common
@click.option("--hook", type=click.Choice(HOOKS), help="Only this gate (default: every gate of the moment).")
@click.option("--reason", default="", help="Why, shown in Flagger's events.")
def halt(canary: str, server: str, token_file: Path | None, output: str, hook: str | None, reason: str) -> None:
    """Hold the analysis, whatever the load says, until approved."""
    _show(_call("POST", server, f"/gates/{_path(canary)}/halt", token_file, {"hook": hook, "reason": reason}), output)


@gate.command("rollback")
@_common
@click.option("--cancel", is_flag=True, help="Close a manual rollback that has not happened yet.")
@click.option("--reason", default="", help="Why, shown in Flagger's events.")
def rollback(canary: str, server: str, token_file: Path | None, output: str, cancel: bool, reason: str) -> None:
    """Open a manual rollback: the rollback hook answers 200 and Flagger rolls back at its next tick."""
    if cancel:
        _show(_call("DELETE", server, f"/gates/{_path(canary)}/rollback", token_file, None), output)
    else:
        _show(_call("POST", server, f"/gates/{_path(canary)}/rollback", token_file, {"reason": reason}), output)


@gate.command("status")
@_common
def status(canary: str, server: str, token_file: Path | None, output: str) -> None:
    """Show the open analysis and its gates (no token needed)."""
    _show(_call("GET", server, f"/gates/{_path(canary)}", token_file, None, auth=False), output)


def _path(canary: str) -> str:
    namespace, name = _canary(canary)
    return f"{namespace}/{name}"


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {token_file}: {exc.strerror or exc}") from None
    else:
        token = os.environ.get("LOADKIT_TOKEN", "").strip()
    if not token:
        raise UsageError("this needs the server's bearer token", hint="pass --token-file FILE or set LOADKIT_TOKEN")
    return token


def _call(method: str, server: str, path: str, token_file: Path | None, body: dict[str, Any] | None,
          auth: bool = True) -> dict[str, Any]:
    import httpx

    from loadkit import httpcalls

    if not server.startswith(("http://", "https://")):
        raise UsageError(f"--server {server!r} is not a URL", hint="e.g. --server http://loadkit.loadkit")
    headers = {"Authorization": f"Bearer {_token(token_file)}"} if auth else {}
    headers["Accept"] = "application/json"
    data = {k: v for k, v in (body or {}).items() if v not in (None, "")}
    try:
        response = httpcalls.request(method, f"{server.rstrip('/')}{path}", headers=headers, timeout=TIMEOUT_S,
                                     json=data if body is not None else None)
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot reach loadkit serve at {server}: {exc}",
                          hint="check --server (kubectl -n loadkit port-forward svc/loadkit 8080:80)") from None
    if response.status_code >= 400:
        raise _error(response)
    return dict(response.json())


def _error(response: Any) -> Exception:
    try:
        message = str(response.json().get("message", response.text))
    except ValueError:
        message = response.text.strip()
    status = response.status_code
    if status in (401, 403):
        return AuthError(f"the server refused: {message}")
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return NotReadyError(message)
    if status < 500:
        return UsageError(message)
    return TargetError(f"the server failed ({status}): {message}")


def _show(status: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(status))
        return
    canary = f"{status['namespace']}/{status['name']}"
    analysis = status.get("analysis")
    where = f"analysis {analysis['id']} (checksum {analysis['checksum']})" if analysis else "no analysis open"
    if status.get("message"):
        click.echo(f"{canary}: {status['message']}")
    click.echo(f"{canary}: {where}")
    for g in status.get("gates", []):
        owner = "the next rollout" if not g["analysis"] else f"analysis {g['analysis']}"
        reason = f": {g['reason']}" if g.get("reason") else ""
        click.echo(f"  {g['hook']}: {g['state']} ({owner}){reason}")
