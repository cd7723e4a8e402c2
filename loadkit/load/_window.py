"""Exact per-window request statistics, shared by the Locust plugin and its parent.

Runs inside the Locust process (so: no locust import here, and a cheap `record`), and in the
loadkit process to read results back. Latencies go into an HdrHistogram in microseconds with 3
significant digits (0.1 % resolution), not Locust's rounded buckets where 504 ms reads as 500.

Counting rules (documented in docs/metrics.md):
- success rate (Flagger's): requests minus 5xx answers minus connection errors, over requests.
- error rate: requests Locust marks as failed (4xx, 5xx, connection errors, catch_response
  failures) plus exceptions raised by tasks (a failed `assert` in a locustfile), over requests.
- latency: every request that got an HTTP answer; connection errors have no latency.
- open model (a rate): latency counts from the iteration's intended start (its first request carries
  the start lag); an iteration dropped because it could not start within the allowed lateness
  counts in `dropped_iterations` and once in the latency histogram at its lateness (a lower bound
  of what it would have taken), so a generator that falls behind never reports a better p99; an
  iteration still running when the run ends counts in `cut_off_iterations` and once in the histogram
  at its age then (also a lower bound). analysis/_result.py fails a latency check those could hide.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour; longer samples are clamped
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50.0, 95.0, 99.0)
# Distinct failure messages kept (per window, and in the run's total); the rest are counted in one row,
# OTHER_MESSAGES, so the counts always add up. A merge keeps the most frequent: a message that comes in
# with more than the rarest kept one takes its place, and the rarest one's count moves to OTHER_MESSAGES.
MAX_ERROR_MESSAGES = 50
OTHER_MESSAGES = f"(other messages: more than {MAX_ERROR_MESSAGES} distinct)"
# Distinct (method, name) rows kept; the requests of any further name are counted in one row per method,
# named OTHER_ENDPOINTS. Each row holds its own latency buckets, so a locustfile that requests raw URLs
# with ids and no `name=` would otherwise grow a row per URL, without end.
MAX_ENDPOINTS = 200
OTHER_ENDPOINTS = f"(other names: more than {MAX_ENDPOINTS})"


class _Status:
    __slots__ = ("status_code",)

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def _error_text(exception: Any) -> str:
    if isinstance(exception, BaseException):
        text = str(exception) or type(exception).__name__
        return f"{type(exception).__name__}: {text}"[:200] if text != type(exception).__name__ else text
    return str(exception)[:200]


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


# HdrHistogram's counts-array index, computed inline in the hot path (the package's own
# record_value costs about twice as much per request). Same formula as hdrh's _counts_index_for;
# tests/load/test_window.py checks the two agree value by value.
_T = new_histogram()
_MASK, _UNIT, _SHCM, _HALF = _T.sub_bucket_mask, _T.unit_magnitude, _T.sub_bucket_half_count_magnitude, \
    _T.sub_bucket_half_count
_BASE = _UNIT + _SHCM + 1
del _T
# An endpoint's latencies count 16 neighbouring buckets as one (2 significant digits, <= 1.6 % wide,
# shown at the group's upper edge, so never below the true value): a run's 200 endpoints x 3-digit
# buckets would otherwise keep a dict entry for nearly every request of a widely spread latency.
_ENDPOINT_SHIFT = 4
_ENDPOINT_TOP = (1 << _ENDPOINT_SHIFT) - 1


REFUSED_MARKER = "loadkit refused a connection"  # the pinned plugin's refusal (a request that left the target)
REFUSED_KIND = "refused"


def failure_kind(status: int, exception: BaseException | str | None) -> str:
    """Classify a failed request: refused (it left a pinned target), connection, timeout, http_4xx,
    http_5xx or other."""
    if status == 0:
        if REFUSED_MARKER in str(exception):
            return REFUSED_KIND
        name = type(exception).__name__.lower() if isinstance(exception, BaseException) else str(exception)
        return "timeout" if "timeout" in name.lower() else "connection"
    if 500 <= status <= 599:
        return "http_5xx"
    if 400 <= status <= 499:
        return "http_4xx"
    return "other"


class Window:
    """Requests seen during one interval (or merged across intervals and processes)."""

    __slots__ = ("_counts", "_hist", "_max_us", "_min_us", "_pending", "codes", "cut_off", "dropped", "endpoints",
                 "errors", "exceptions", "failures", "iterations", "kinds", "lag", "requests")

    def __init__(self) -> None:
        self._hist: HdrHistogram
        self._counts: Any
        self._pending: int
        self._min_us: int
        self._max_us: int
        self.requests = 0
        self.failures = 0
        self.exceptions = 0
        self.codes: dict[int, int] = {}
        self.kinds: dict[str, int] = {}
        # (method, name) -> [requests, failures, {HdrHistogram counts index >> 4: count}]: its latencies
        self.endpoints: dict[tuple[str, str], list[Any]] = {}
        self.errors: dict[str, int] = {}
        self.hist = new_histogram()
        # Open model only: iterations started, dropped, and their start lag (µs, intended -> actual start).
        self.iterations = 0
        self.dropped = 0
        self.cut_off = 0  # started, still running when the run ended: recorded at their age then (censored)
        self.lag: HdrHistogram | None = None

    @property
    def hist(self) -> HdrHistogram:
        """The latency histogram (µs), with every inline-recorded sample accounted for."""
        if self._pending:
            h = self._hist
            h.total_count += self._pending
            h.min_value = min(h.min_value, self._min_us)
            h.max_value = max(h.max_value, self._max_us)
            self._pending = 0
        return self._hist

    @hist.setter
    def hist(self, value: HdrHistogram) -> None:
        self._hist = value
        self._counts = value.counts
        self._pending = 0
        self._min_us = HIGHEST_US
        self._max_us = 0

    def on_locust_request(self, request_type: str, name: str, response_time: float, response_length: int,
                          response: Any = None, context: Any = None, exception: Any = None,
                          **_kw: Any) -> None:
        """The hot path: Locust's `request` event, once per request. Kept flat on purpose."""
        try:
            status = response.status_code or 0
        except AttributeError:
            status = 0
        self.requests += 1
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        key = (request_type, name)
        ep = self.endpoints.get(key)
        if ep is None:
            ep = self._new_endpoint(key)
        ep[0] += 1
        if status:
            us = int(response_time * 1000.0)
            if us > HIGHEST_US:
                us = HIGHEST_US
            bucket = (us | _MASK).bit_length() - _BASE
            index = ((bucket + 1) << _SHCM) + (us >> (bucket + _UNIT)) - _HALF
            self._counts[index] += 1
            timed = ep[2]
            group = index >> _ENDPOINT_SHIFT
            timed[group] = timed.get(group, 0) + 1
            self._pending += 1
            if us > self._max_us:
                self._max_us = us
            if us < self._min_us:
                self._min_us = us
        if exception is not None:
            self.failures += 1
            ep[1] += 1
            self._failed(request_type, name, status, exception)

    def _new_endpoint(self, key: tuple[str, str]) -> list[Any]:
        if len(self.endpoints) >= MAX_ENDPOINTS:
            key = (key[0], OTHER_ENDPOINTS)
            other = self.endpoints.get(key)
            if other is not None:
                return other
        ep = self.endpoints[key] = [0, 0, {}]
        return ep

    def on_locust_user_error(self, user_instance: Any = None, exception: Any = None, tb: Any = None,
                             **_kw: Any) -> None:
        """Locust's `user_error` event: a task (or on_start) raised, e.g. a failed assert on a response."""
        self.exceptions += 1
        self._count_message(f"task error: {_error_text(exception)}")

    def record(self, method: str, name: str, response_time_ms: float, status: int,
               exception: BaseException | str | None) -> None:
        """Record one request without Locust objects (tests, other drivers)."""
        self.on_locust_request(method, name, response_time_ms, 0, _Status(status), None, exception)

    def started_iteration(self, lag_ms: float) -> None:
        """Open model: an iteration started `lag_ms` after its intended time."""
        self.iterations += 1
        if self.lag is None:
            self.lag = new_histogram()
        self.lag.record_value(min(HIGHEST_US, max(LOWEST_US, int(lag_ms * 1000.0))))

    def dropped_iteration(self, lateness_ms: float) -> None:
        """Open model: an iteration given up `lateness_ms` after its intended time (never started).

        It counts once in the latency histogram at its lateness: censored, a lower bound of its latency.
        """
        self.dropped += 1
        self.hist.record_value(min(HIGHEST_US, max(LOWEST_US, int(lateness_ms * 1000.0))))

    def cut_off_iteration(self, age_ms: float) -> None:
        """Open model: an iteration still running when the run ended, `age_ms` after its intended start.

        Its request never answered: it counts once in the latency histogram at its age (censored, a
        lower bound of its latency), so a target that stalls at the end of a run cannot pass unseen.
        """
        self.cut_off += 1
        self.hist.record_value(min(HIGHEST_US, max(LOWEST_US, int(age_ms * 1000.0))))

    def _failed(self, method: str, name: str, status: int, exception: Any) -> None:
        kind = failure_kind(status, exception)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self._count_message(f"{method} {name}: {_error_text(exception)}")

    def _count_message(self, message: str, n: int = 1) -> None:
        errors = self.errors
        if message in errors:
            errors[message] += n
        elif len(errors) - (OTHER_MESSAGES in errors) < MAX_ERROR_MESSAGES or message == OTHER_MESSAGES:
            errors[message] = n
        else:
            self._crowded(message, n)

    def _crowded(self, message: str, n: int) -> None:
        """A full table: `message` replaces the rarest kept one if it comes with more, else is 'other'."""
        errors = self.errors
        rarest = min((m for m in errors if m != OTHER_MESSAGES), key=errors.__getitem__)
        if n > errors[rarest]:
            errors[OTHER_MESSAGES] = errors.get(OTHER_MESSAGES, 0) + errors.pop(rarest)
            errors[message] = n
        else:
            errors[OTHER_MESSAGES] = errors.get(OTHER_MESSAGES, 0) + n

    def take(self) -> Window:
        """Move everything recorded so far into a new Window and start afresh (same object)."""
        taken = Window()
        taken.requests, taken.failures, taken.codes = self.requests, self.failures, self.codes
        taken.exceptions, self.exceptions = self.exceptions, 0
        taken.kinds, taken.endpoints, taken.errors, taken.hist = self.kinds, self.endpoints, self.errors, self.hist
        taken.iterations, taken.dropped, taken.lag = self.iterations, self.dropped, self.lag
        taken.cut_off, self.cut_off = self.cut_off, 0
        self.iterations = self.dropped = 0
        self.lag = None
        self.requests = self.failures = 0
        self.codes, self.kinds, self.endpoints, self.errors = {}, {}, {}, {}
        self.hist = new_histogram()
        return taken

    def merge(self, other: Window) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.exceptions += other.exceptions
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n
        for kind, n in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        for key, (req, fail, timed) in other.endpoints.items():
            ep = self.endpoints.get(key) or self._new_endpoint(key)
            ep[0] += req
            ep[1] += fail
            mine = ep[2]
            for index, n in timed.items():
                mine[index] = mine.get(index, 0) + n
        for message, n in other.errors.items():
            self._count_message(message, n)
        if other.hist.get_total_count():
            self.hist.add(other.hist)
        self.iterations += other.iterations
        self.dropped += other.dropped
        self.cut_off += other.cut_off
        if other.lag is not None and other.lag.get_total_count():
            if self.lag is None:
                self.lag = new_histogram()
            self.lag.add(other.lag)

    def to_wire(self) -> dict[str, Any]:
        """A msgpack/JSON-safe form (string keys, histogram base64) for worker -> master messages."""
        return {
            "requests": self.requests,
            "failures": self.failures,
            "exceptions": self.exceptions,
            "codes": {str(k): v for k, v in self.codes.items()},
            "kinds": dict(self.kinds),
            "endpoints": [[m, n, r, f, {str(i): c for i, c in t.items()}]
                          for (m, n), (r, f, t) in self.endpoints.items()],
            "errors": dict(self.errors),
            "hist": self.encoded_histogram(),
            "iterations": self.iterations,
            "dropped": self.dropped,
            "cut_off": self.cut_off,
            "lag": self.lag.encode().decode("ascii") if self.lag is not None and self.lag.get_total_count() else "",
        }

    def encoded_histogram(self) -> str:
        """Base64 HdrHistogram (V2 format, µs), or "" when nothing was timed."""
        return self.hist.encode().decode("ascii") if self.hist.get_total_count() else ""

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Window:
        w = cls()
        w.requests = int(data["requests"])
        w.failures = int(data["failures"])
        w.exceptions = int(data.get("exceptions", 0))
        w.codes = {int(k): int(v) for k, v in data["codes"].items()}
        w.kinds = {str(k): int(v) for k, v in data["kinds"].items()}
        w.endpoints = {(str(e[0]), str(e[1])): [int(e[2]), int(e[3]), {int(i): int(c) for i, c in
                                                                       (e[4] if len(e) > 4 else {}).items()}]
                       for e in data["endpoints"]}
        w.errors = {str(k): int(v) for k, v in data.get("errors", {}).items()}
        if data.get("hist"):
            w.hist = decode_histogram(data["hist"])
        w.iterations = int(data.get("iterations", 0))
        w.dropped = int(data.get("dropped", 0))
        w.cut_off = int(data.get("cut_off", 0))
        if data.get("lag"):
            w.lag = decode_histogram(data["lag"])
        return w

    def summary(self, duration_s: float) -> dict[str, Any]:
        """The numbers of `loadkit.models.wire.Stats`, computed from this window."""
        n = self.requests
        bad_for_flagger = sum(v for c, v in self.codes.items() if c == 0 or 500 <= c <= 599)
        pct = latency_percentiles_ms(self.hist)
        return {
            "requests": n,
            "failures": self.failures,
            "rps": round(n / duration_s, 3) if duration_s > 0 else 0.0,
            "p50_ms": pct[50.0],
            "p95_ms": pct[95.0],
            "p99_ms": pct[99.0],
            "max_ms": max_ms(self.hist),
            "exceptions": self.exceptions,
            "success_rate_pct": 100.0 * (n - bad_for_flagger) / n if n else None,
            "error_rate_pct": min(100.0, 100.0 * (self.failures + self.exceptions) / n) if n else None,
            "status_codes": {str(k): v for k, v in sorted(self.codes.items())},
            "status_classes": status_classes(self.codes),
            "failures_by_kind": dict(sorted(self.kinds.items())),
            "duration_s": round(duration_s, 3),
            **self.open_model_summary(),
        }

    def open_model_summary(self) -> dict[str, Any]:
        """Iterations, dropped iterations and start lag; nothing for a closed-model (users) window."""
        if not (self.iterations or self.dropped or self.cut_off):
            return {}
        lag = self.lag if self.lag is not None and self.lag.get_total_count() else None
        lag_us = values_at_percentiles(lag, (50.0, 99.0)) if lag else {}
        return {
            "iterations": self.iterations,
            "dropped_iterations": self.dropped,
            "cut_off_iterations": self.cut_off,
            "start_lag_p50_ms": lag_us[50.0] / 1000.0 if lag else None,
            "start_lag_p99_ms": lag_us[99.0] / 1000.0 if lag else None,
            "start_lag_max_ms": max_ms(lag) if lag else None,
        }


def window_from_summary(stats: dict[str, Any], histogram: str) -> Window:
    """Rebuild a mergeable Window from a summary (Stats fields) and its encoded histogram."""
    w = Window()
    w.requests = int(stats.get("requests", 0))
    w.failures = int(stats.get("failures", 0))
    w.exceptions = int(stats.get("exceptions", 0))
    w.codes = {int(k): int(v) for k, v in (stats.get("status_codes") or {}).items()}
    w.kinds = {str(k): int(v) for k, v in (stats.get("failures_by_kind") or {}).items()}
    if histogram:
        w.hist = decode_histogram(histogram)
    w.iterations = int(stats.get("iterations") or 0)
    w.dropped = int(stats.get("dropped_iterations") or 0)
    w.cut_off = int(stats.get("cut_off_iterations") or 0)
    return w


def merge_summaries(parts: list[tuple[dict[str, Any], str]], duration_s: float) -> dict[str, Any]:
    """Exact stats of several windows together (e.g. one phase of a chaos run)."""
    total = Window()
    for stats, histogram in parts:
        total.merge(window_from_summary(stats, histogram))
    return total.summary(duration_s)


def status_classes(codes: dict[int, int]) -> dict[str, int]:
    """{200: 5, 204: 1, 503: 2, 0: 1} -> {"2xx": 6, "5xx": 2, "no_response": 1}."""
    classes: dict[str, int] = {}
    for code, n in codes.items():
        name = "no_response" if code == 0 else f"{code // 100}xx"
        classes[name] = classes.get(name, 0) + n
    return dict(sorted(classes.items()))


def decode_histogram(encoded: str) -> HdrHistogram:
    """Decode into a full-size histogram (decoded ones are truncated and cannot take adds)."""
    hist = new_histogram()
    hist.decode_and_add(encoded)
    return hist


def latency_percentiles_ms(hist: HdrHistogram) -> dict[float, float | None]:
    """Upper bucket edges in ms (HdrHistogram's convention): never below the true value."""
    if not hist.get_total_count():
        return {p: None for p in PERCENTILES}
    return {p: us / 1000.0 for p, us in values_at_percentiles(hist, PERCENTILES).items()}


def values_at_percentiles(hist: HdrHistogram, percentiles: Iterable[float]) -> dict[float, int]:
    """`hist.get_value_at_percentile(p)` for each p, to the same value, from one pass over the counts.

    hdrh walks the counts in Python once per percentile (a few thousand buckets, ~10 ms for three at
    every window); here the running totals are summed in C once and each percentile is a bisection.
    """
    counts = hist.counts[: min(hist.counts_len, hist.encoder.payload.counts_len)]
    running = list(accumulate(counts))
    values: dict[float, int] = {}
    for p in percentiles:
        index = bisect_left(running, hist.get_target_count_at_percentile(p))
        if index == len(running):
            values[p] = 0
            continue
        value = hist.get_value_from_index(index)
        values[p] = hist.get_highest_equivalent_value(value) if p else hist.get_lowest_equivalent_value(value)
    return values


def endpoint_rows(endpoints: dict[tuple[str, str], list[Any]]) -> list[list[Any]]:
    """[method, name, requests, failures, p50, p95, p99, max (ms)] per endpoint, from its own counts:
    the run's HdrHistogram buckets 16 at a time (<= 1.6 % wide), at their upper edge like the run's."""
    rows = []
    for (method, name), (requests, failures, timed) in sorted(endpoints.items()):
        hist = new_histogram()
        for group, n in timed.items():
            hist.counts[(group << _ENDPOINT_SHIFT) | _ENDPOINT_TOP] += n
            hist.total_count += n
        if timed:
            hist.min_value = hist.get_value_from_index((min(timed) << _ENDPOINT_SHIFT) | _ENDPOINT_TOP)
            hist.max_value = hist.get_value_from_index((max(timed) << _ENDPOINT_SHIFT) | _ENDPOINT_TOP)
        pct = latency_percentiles_ms(hist)
        rows.append([method, name, requests, failures, pct[50.0], pct[95.0], pct[99.0], max_ms(hist)])
    return rows


def max_ms(hist: HdrHistogram) -> float | None:
    if not hist.get_total_count():
        return None
    return hist.get_highest_equivalent_value(hist.get_max_value()) / 1000.0


def latency_samples_ms(encoded: str) -> Any:
    """Every recorded latency (ms), from a base64 HdrHistogram: one sample per request.

    Each value is its bucket's midpoint (3 significant digits), as close as the histogram knows.
    Returns a numpy array (numpy is imported here, not in the Locust process that shares this module).
    """
    import numpy as np

    if not encoded:
        return np.empty(0)
    hist = decode_histogram(encoded)
    values, counts = [], []
    for item in hist.get_recorded_iterator():
        low = hist.get_lowest_equivalent_value(item.value_iterated_to)
        values.append((low + hist.get_highest_equivalent_value(item.value_iterated_to)) / 2000.0)
        counts.append(item.count_added_in_this_iter_step)
    return np.repeat(np.asarray(values, dtype=float), np.asarray(counts, dtype=np.int64))
