"""Envoy's retry decisions, for the router: which failed tries to retry, and how long to wait first.

A try ends with a status and one of Envoy's upstream response flags:

    "-"   a pod answered with that status
    "UF"  connect failure: the pod refused the connection, or connecting timed out
    "UC"  the pod dropped the connection before it answered in full
    "UT"  the per-try timeout ran out
    "UH"  there was no pod to try: never retried, as there is nowhere to send it

Which of those a route's `retryOn` retries, as Envoy's router decides (`RetryStateImpl`): a try
that got no answer counts as a reset, and as a 5xx.

    5xx                       any 5xx answer; UF, UC, UT
    gateway-error             502, 503, 504; UF, UC, UT
    reset                     UF, UC, UT
    connect-failure           UF
    retriable-4xx             409
    retriable-status-codes    the route's codes (Istio: 503 unless `retryOn` lists codes itself)
    refused-stream, gRPC's    never, over the router's HTTP/1.1 to an app without gRPC

The wait before the n-th retry is Envoy's default back-off: uniform in [0, min(25 ms * (2^n - 1),
250 ms)), so 0-25 ms, then 0-75 ms, then 0-175 ms. Pure: the random draw is passed in.
"""

from __future__ import annotations

from loadkit.sandbox._spec import RetryOn, RoutePolicy

NO_ANSWER_FLAGS = frozenset({"UF", "UC", "UT"})
BASE_BACKOFF_S, MAX_BACKOFF_S = 0.025, 0.250
# Envoy retries a request only while its body fits the retry buffer (the connection buffer limit,
# 1 MiB by default); the router holds every body in full, so size alone decides.
RETRY_BUFFER_LIMIT = 1024 * 1024
_GATEWAY_ERRORS = frozenset({502, 503, 504})
_RESET_CONDITIONS = frozenset({RetryOn.FIVE_XX, RetryOn.GATEWAY_ERROR, RetryOn.RESET})


def should_retry(policy: RoutePolicy, status: int, flag: str) -> bool:
    """Whether `retryOn` covers a try that ended with `status` and `flag` (retries left or not).

    >>> policy = RoutePolicy.from_istio(2, "connect-failure")
    >>> should_retry(policy, 503, "UF"), should_retry(policy, 503, "-")
    (True, False)
    """
    conditions = set(policy.retry_on)
    if flag in NO_ANSWER_FLAGS:
        return bool(conditions & _RESET_CONDITIONS) or (flag == "UF" and RetryOn.CONNECT_FAILURE in conditions)
    if flag != "-":
        return False
    return (
        (RetryOn.FIVE_XX in conditions and 500 <= status <= 599)
        or (RetryOn.GATEWAY_ERROR in conditions and status in _GATEWAY_ERRORS)
        or (RetryOn.RETRIABLE_4XX in conditions and status == 409)
        or (RetryOn.RETRIABLE_STATUS_CODES in conditions and status in policy.retriable_status_codes)
    )


def backoff_s(retry: int, draw: float) -> float:
    """Seconds to wait before the `retry`-th retry (1-based); `draw` is uniform in [0, 1).

    >>> backoff_s(1, 0.5), round(backoff_s(2, 0.5), 6), backoff_s(9, 0.999)
    (0.0125, 0.0375, 0.24975)
    """
    return draw * min(BASE_BACKOFF_S * (2**retry - 1), MAX_BACKOFF_S)
