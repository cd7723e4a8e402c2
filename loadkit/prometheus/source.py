"""Reading numbers from Prometheus' HTTP API (httpx), with errors people can act on.

Errors are read from the answer itself: its HTTP status and Prometheus' JSON (`status`, `errorType`,
`error`), never from an exception's text.

- cannot reach Prometheus, or it fails (5xx)           -> TargetError (exit 3)
- Prometheus refuses the query (400/422: bad PromQL)    -> ConfigError naming the check and the query
- several series, a range vector or a non-number        -> ConfigError naming the check and the query
- no series, or NaN (e.g. 0/0: no requests)             -> None: the caller's "no data" (a failed check)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from loadkit import httpcalls
from loadkit.errors import ConfigError, TargetError

DEFAULT_TIMEOUT_S = 10.0
RETRIES = 2  # quick ones, on connection errors and 502-504: a restarting Prometheus or its proxy
RETRY_STATUSES = frozenset({502, 503, 504})
RETRY_BACKOFF_S = 0.1
QUERY_ERRORS = frozenset({"bad_data", "execution"})  # Prometheus' errorType for a query it cannot run
REACH_HINT = "check --prometheus (or prometheus.url in the config) and that Prometheus is up"


@dataclass(frozen=True)
class Series:
    """One series of a range query."""

    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value), in time order


@dataclass(frozen=True)
class Value:
    """One query's answer: a number, or None with why there is none."""

    value: float | None
    no_data: str = ""


class PrometheusSource:
    """One Prometheus server. `url` is its base URL, e.g. http://prometheus.istio-system:9090."""

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, follow_redirects=True,
                                    transport=httpx.HTTPTransport(retries=RETRIES, verify=httpcalls.tls()))

    def close(self) -> None:
        self._client.close()

    # -- queries --------------------------------------------------------------------------------------

    def value(self, query: str, *, check: str, at: datetime | None = None) -> Value:
        """An instant query that must give one number."""
        params = {"query": query, **({"time": f"{at.timestamp():.3f}"} if at is not None else {})}
        return _single(self._get("/api/v1/query", params, check=check, query=query), check=check, query=query)

    def matrix(self, query: str, *, check: str, start: datetime, end: datetime,
               step_s: float) -> list[Series]:
        """A range query: every series it returns, each with its labels and (time, value) points."""
        params = {"query": query, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}",
                  "step": f"{step_s:g}s"}
        result = self._get("/api/v1/query_range", params, check=check, query=query)
        return [Series(dict(s.get("metric", {})),
                       [(float(t), _number(v, check, query)) for t, v in s.get("values", [])])
                for s in result or []]

    def wait_until(self, query: str, at_least: float, *, timeout_s: float) -> bool:
        """Poll `query` until it is >= at_least (or has no data: nothing to wait for); False on timeout.

        With `min(timestamp(series))` and the end of a run, it waits for the scrape that holds
        the run's last seconds.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.value(query, check="scrape check")
            if answer.value is None or answer.value >= at_least:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)

    def _get(self, path: str, params: dict[str, str], *, check: str, query: str) -> Any:
        """The `data.result` of a successful answer; else the error the answer describes."""
        for attempt in range(RETRIES + 1):
            try:
                response = self._client.get(path, params=params)
            except httpx.HTTPError as exc:  # connection refused, DNS, timeouts (after the transport's retries)
                raise TargetError(f"cannot reach Prometheus at {self.url} ({type(exc).__name__}: {_short(exc)})",
                                  hint=REACH_HINT) from None
            if response.status_code not in RETRY_STATUSES or attempt == RETRIES:
                break
            time.sleep(RETRY_BACKOFF_S * 2**attempt)
        return _result(response, self.url, check=check, query=query)


def now() -> datetime:
    return datetime.now(UTC)


def _result(response: httpx.Response, url: str, *, check: str, query: str) -> Any:
    body = _json(response)
    if response.is_success and body.get("status") == "success" and isinstance(body.get("data"), dict):
        return body["data"].get("result")
    error = str(body.get("error") or response.text[:300].strip() or response.reason_phrase)
    if response.status_code in (400, 422) or body.get("errorType") in QUERY_ERRORS:
        raise ConfigError(f"check {check!r}: Prometheus refused its query: {error}\n  query: {query}",
                          hint="fix the query (try it in the Prometheus UI first)")
    if response.is_success:  # 200 but not Prometheus' API answer
        raise TargetError(f"{url} answered, but not as Prometheus' HTTP API does ({error[:120]})",
                          hint="check that the URL points at Prometheus itself, e.g. http://prometheus:9090")
    raise TargetError(f"Prometheus at {url} answered HTTP {response.status_code}: {error}",
                      hint="check that the URL points at Prometheus' HTTP API")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:  # not JSON: an HTML error page, a proxy's answer
        return {}
    return body if isinstance(body, dict) else {}


def _single(result: Any, *, check: str, query: str) -> Value:
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return _as_value(_number(result[1], check, query))  # a scalar: [time, "value"]
    if not result:
        return Value(None, "the query returned no series")
    if "value" not in result[0]:
        raise ConfigError(f"check {check!r}: its query returned a range vector, not a number\n  query: {query}",
                          hint="aggregate it, e.g. sum(rate(metric[{{ interval }}]))")
    if len(result) > 1:
        raise _several(result, check, query)
    return _as_value(_number(result[0]["value"][1], check, query))


def _as_value(number: float) -> Value:
    if math.isnan(number):
        return Value(None, "the query returned NaN (usually 0/0: no requests in the interval)")
    if math.isinf(number):
        sign = "+" if number > 0 else "-"
        return Value(None, f"the query returned {sign}Inf (usually x/0: nothing to divide by in the interval)")
    return Value(number)


def _number(text: Any, check: str, query: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"check {check!r}: its query returned {text!r}, not a number\n  query: {query}",
                          hint="the query must return one number") from None


def _several(result: list[Any], check: str, query: str) -> ConfigError:
    labels = ", ".join("{" + ",".join(f'{k}="{v}"' for k, v in s.get("metric", {}).items()) + "}"
                       for s in result[:3])
    more = f" and {len(result) - 3} more" if len(result) > 3 else ""
    return ConfigError(
        f"check {check!r}: its query returned {len(result)} series, not one number: {labels}{more}\n"
        f"  query: {query}",
        hint="aggregate the series into one, e.g. wrap the query in sum(...)",
    )


def _short(exc: httpx.HTTPError) -> str:
    """The cause people can act on ('[Errno 111] Connection refused'), not a library's retry story."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
