"""Reading numbers from Prometheus (prometheus-api-client), with errors people can act on.

- cannot reach Prometheus, or it fails (5xx)           -> TargetError (exit 3)
- Prometheus refuses the query (400: bad PromQL)        -> ConfigError naming the check and the query
- several series, a range vector or a non-number        -> ConfigError naming the check and the query
- no series, or NaN (e.g. 0/0: no requests)             -> None: the caller's "no data" (a failed check)
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from loadkit.errors import ConfigError, TargetError

DEFAULT_TIMEOUT_S = 10.0


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
        # Two quick retries on connection errors and 502-504, not the library's 1 s x 3 back-off.
        retry = Retry(total=2, backoff_factor=0.1, status_forcelist=[502, 503, 504], allowed_methods=None)
        self._client = PrometheusConnect(url=self.url, retry=retry, timeout=timeout_s)  # type: ignore[arg-type]

    def close(self) -> None:
        self._client.close()

    # -- queries --------------------------------------------------------------------------------------

    def value(self, query: str, *, check: str, at: datetime | None = None) -> Value:
        """An instant query that must give one number."""
        params = {"time": f"{at.timestamp():.3f}"} if at is not None else {}
        result = self._call(check, query, lambda: self._client.custom_query(query, params=params))
        return _single(result, check=check, query=query)

    def matrix(self, query: str, *, check: str, start: datetime, end: datetime,
               step_s: float) -> list[Series]:
        """A range query: every series it returns, each with its labels and (time, value) points."""
        result = self._call(check, query, lambda: self._client.custom_query_range(
            query, start_time=start, end_time=end, step=f"{step_s:g}s"))
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

    def _call(self, check: str, query: str, call: Any) -> Any:
        try:
            return call()
        except requests.RequestException as exc:
            raise TargetError(f"cannot reach Prometheus at {self.url} ({type(exc).__name__}: {_short(exc)})",
                              hint="check --prometheus (or prometheus.url in the config) and that Prometheus "
                                   "is up") from None
        except PrometheusApiClientException as exc:
            status, message = _api_error(str(exc))
            if status == 400 or status == 422:
                raise ConfigError(f"check {check!r}: Prometheus refused its query: {message}\n  query: {query}",
                                  hint="fix the query (try it in the Prometheus UI first)") from None
            raise TargetError(f"Prometheus at {self.url} answered HTTP {status}: {message}",
                              hint="check that the URL points at Prometheus' HTTP API") from None


def now() -> datetime:
    return datetime.now(UTC)


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


def _api_error(text: str) -> tuple[int, str]:
    """prometheus-api-client's message is "HTTP Status Code 400 (b'{...json...}')"."""
    status = 0
    head, _, rest = text.partition("(")
    digits = "".join(ch for ch in head if ch.isdigit())
    if digits:
        status = int(digits)
    body = rest.rstrip(")").strip()
    if body.startswith(("b'", 'b"')):
        body = body[2:-1]
    try:
        data = json.loads(body.encode().decode("unicode_escape"))
        return status, str(data.get("error") or data)
    except (ValueError, AttributeError):
        return status, body[:300]


def _short(exc: Exception) -> str:
    """The cause people can act on ('[Errno 111] Connection refused'), not urllib3's retry story."""
    text = str(exc)
    cause = re.search(r"\[Errno -?\d+\] [^'\")]+|Read timed out|timed out", text)
    if cause:
        return cause.group(0).strip()
    return text if len(text) <= 200 else text[:200] + "..."
