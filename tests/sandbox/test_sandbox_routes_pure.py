"""Table-driven tests of the pure parts behind retries, timeouts and fault owners."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loadkit.cli.sandbox import describe_route
from loadkit.sandbox import Version, VersionSpec
from loadkit.sandbox._faults import FaultKind, FaultOwner, FaultTable, RouterFault
from loadkit.sandbox._istio import Reporter, destination_labels, response_flags
from loadkit.sandbox._pods import ReplicaSet
from loadkit.sandbox._retries import MAX_BACKOFF_S, backoff_s, should_retry
from loadkit.sandbox._spec import RetryOn, RoutePolicy, parse_retry_on
from loadkit.sandbox.models import RetriesInfo, WorkloadInfo

# -- retryOn -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "conditions", "codes"),
    [
        pytest.param("5xx", ["5xx"], set(), id="one"),
        pytest.param("connect-failure, 5xx,connect-failure", ["connect-failure", "5xx"], set(), id="dedup"),
        pytest.param("503", ["retriable-status-codes"], {503}, id="code-implies-condition"),
        pytest.param("reset,503,409,retriable-status-codes", ["reset", "retriable-status-codes"], {503, 409},
                     id="codes-and-condition"),
        pytest.param("GATEWAY-ERROR,", ["gateway-error"], set(), id="case-and-trailing-comma"),
        pytest.param(
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"],
            set(),
            id="istio-default"
        ),
    ],
)
def test_parse_retry_on(text: str, conditions: list[str], codes: set[int]) -> None:
    parsed, parsed_codes = parse_retry_on(text)
    assert ([c.value for c in parsed], set(parsed_codes)) == (conditions, codes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("5xx,oops", "'oops' is not a retry condition", id="unknown"),
        pytest.param("200", "200 is not a 4xx or 5xx", id="success-code"),
        pytest.param(" , ", "no retry condition", id="empty"),
        pytest.param("5XX;reset", "'5xx;reset' is not", id="wrong-separator"),
    ],
)
def test_parse_retry_on_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_retry_on(text)


def test_istio_defaults_apply_only_without_retry_on() -> None:
    default = RoutePolicy.from_istio(2)
    assert (default.retry_on_names[0], default.retriable_status_codes) == ("connect-failure", {503})
    explicit = RoutePolicy.from_istio(2, "connect-failure")  # as Istio: explicit retryOn, only its own codes
    assert (explicit.retry_on, explicit.retriable_status_codes) == ((RetryOn.CONNECT_FAILURE,), frozenset())
    assert not RoutePolicy().active and RoutePolicy(timeout_s=1).active and RoutePolicy(attempts=1).active


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"attempts": -1}, id="negative"),
        pytest.param({"attempts": 11}, id="too-many"),
        pytest.param({"per_try_timeout_s": 0}, id="zero-per-try"),
        pytest.param({"timeout_s": 3601}, id="over-an-hour"),
    ],
)
def test_route_policy_rejects(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RoutePolicy(**kwargs)  # type: ignore[arg-type]


# -- which tries are retried -----------------------------------------------------------------------

_RETRY_CASES = [
    # retryOn, status, flag, retried
    ("connect-failure", 503, "UF", True),
    ("connect-failure", 503, "UC", False),
    ("connect-failure", 504, "UT", False),
    ("connect-failure", 503, "-", False),
    ("reset", 503, "UC", True),
    ("reset", 504, "UT", True),
    ("reset", 503, "UF", True),
    ("reset", 500, "-", False),
    ("5xx", 500, "-", True),
    ("5xx", 599, "-", True),
    ("5xx", 404, "-", False),
    ("5xx", 504, "UT", True),
    ("5xx", 503, "UF", True),
    ("gateway-error", 502, "-", True),
    ("gateway-error", 500, "-", False),
    ("gateway-error", 504, "UT", True),
    ("retriable-4xx", 409, "-", True),
    ("retriable-4xx", 429, "-", False),
    ("503,429", 429, "-", True),
    ("503,429", 500, "-", False),
    ("retriable-status-codes", 503, "-", False),  # explicit retryOn without codes: nothing to match
    ("refused-stream,unavailable,cancelled", 503, "UF", False),
    ("5xx", 503, "UH", False),  # no pod to try
]


@pytest.mark.parametrize(("retry_on", "status", "flag", "retried"), _RETRY_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in _RETRY_CASES])
def test_should_retry(retry_on: str, status: int, flag: str, retried: bool) -> None:
    assert should_retry(RoutePolicy.from_istio(2, retry_on), status, flag) is retried


def test_istio_default_retries_503_and_connect_failures() -> None:
    policy = RoutePolicy.from_istio(2)
    assert [should_retry(policy, *case) for case in [(503, "-"), (500, "-"), (503, "UF"), (503, "UC")]] == [
        True, False, True, False]


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 8])
def test_backoff_is_envoys_jittered_exponential(retry: int) -> None:
    ceiling = min(0.025 * (2**retry - 1), MAX_BACKOFF_S)
    assert backoff_s(retry, 0.0) == 0.0
    assert backoff_s(retry, 0.5) == pytest.approx(ceiling / 2)
    assert backoff_s(retry, 0.999999) < ceiling


def _replica_set(ready: list[bool]) -> ReplicaSet:
    replica_set = ReplicaSet(VersionSpec(Version.CANARY, pods=len(ready)), "bruno", log=lambda line: None)
    for pod, is_ready in zip(replica_set.pods, ready, strict=True):
        pod.ready, pod.port = is_ready, 1000
    return replica_set


@pytest.mark.parametrize(
    ("ready", "avoid", "picked"),
    [
        pytest.param([True, True, True], [], ["bruno-site-0", "bruno-site-1", "bruno-site-2", "bruno-site-0"],
                     id="round-robin"),
        pytest.param([True, True], ["bruno-site-0"], ["bruno-site-1"] * 4, id="prefers-untried"),
        pytest.param([True, True], ["bruno-site-0", "bruno-site-1"], ["bruno-site-0", "bruno-site-1"] * 2,
                     id="all-tried"),
        pytest.param([False, True], ["bruno-site-1"], ["bruno-site-1"] * 2,
                     id="only-one-ready"),  # the only ready pod, tried or not
        pytest.param([False, False], [], [None], id="none-ready"),
    ],
)
def test_pick_prefers_pods_not_tried_yet(ready: list[bool], avoid: list[str], picked: list[str | None]) -> None:
    replica_set = _replica_set(ready)
    names = [pod.name if (pod := replica_set.pick(avoid)) else None for _ in picked]
    assert names == picked


# -- metrics and flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "label"),
    [
        pytest.param(["URX", "UT"], "UT,URX", id="timeout-exhausted"),
        pytest.param(["DC", "URX", "UF"], "UF,DC,URX", id="connect-exhausted-hangup"),
        pytest.param(["UT", "DI"], "UT,DI", id="delay-then-timeout"),
        pytest.param(["UH", "UT"], "UH,UT", id="uh-first"),
    ],
)
def test_retry_flags_join_in_envoy_order(flags: list[str], label: str) -> None:
    assert response_flags(flags) == label


def test_source_reporter_labels() -> None:
    source = destination_labels(Version.CANARY, "bruno", 200, "-", Reporter.SOURCE)
    destination = destination_labels(Version.CANARY, "bruno", 200, "-")
    assert (source["reporter"], destination["reporter"]) == ("source", "destination")
    assert {k: v for k, v in source.items() if k != "reporter"} == {
        k: v for k, v in destination.items() if k != "reporter"}


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        pytest.param(RoutePolicy(), "no retries; no timeout", id="off"),
        pytest.param(RoutePolicy(timeout_s=10), "no retries; timeout 10s", id="timeout-only"),
        pytest.param(
            RoutePolicy.from_istio(2, "connect-failure,5xx", 1.5, 10),
            "retries 2 on connect-failure,5xx, 1.5s per try; "
             "timeout 10s",
            id="full"
        ),
        pytest.param(
            RoutePolicy.from_istio(3),
            "retries 3 on connect-failure,refused-stream,unavailable,cancelled,"
            "retriable-status-codes (503); no timeout",
            id="istio-default"
        ),
    ],
)
def test_describe_route(policy: RoutePolicy, text: str) -> None:
    workload = WorkloadInfo(name="bruno-site", error_rate=0, latency_ms=0, pods=[], retries=RetriesInfo.of(policy),
                            timeout_s=policy.timeout_s)
    assert describe_route(workload) == text


# -- fault owners --------------------------------------------------------------------------------

_T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _fault(fault_id: str, version: Version, run: str | None) -> RouterFault:
    owner = FaultOwner(run=run, pid=7) if run else None
    return RouterFault(fault_id, version, FaultKind.DELAY, 100, _T0, _T0, delay_ms=1, owner=owner)


def test_fault_table_selects_and_clears_by_run_and_version() -> None:
    table = FaultTable()
    for fault_id, version, run in [("a1", Version.CANARY, "a"), ("b1", Version.CANARY, "b"),
                                   ("n1", Version.CANARY, None), ("a2", Version.PRIMARY, "a")]:
        table.add(_fault(fault_id, version, run))
    assert [f.id for f in table.select(run="a")] == ["a1", "a2"]
    assert [f.id for f in table.select(Version.CANARY, "a")] == ["a1"]
    assert [f.id for f in table.select(Version.CANARY)] == ["a1", "b1", "n1"]
    assert [f.id for f in table.clear(run="a")] == ["a1", "a2"]
    assert table.clear(run="a") == []
    assert [f.id for f in table] == ["b1", "n1"]


@pytest.mark.parametrize(
    ("owner", "text"),
    [
        pytest.param(
            FaultOwner(run="chaos-1", pid=42, host="ci", command="chaos run"),
            "run chaos-1 (pid 42 on ci, 'chaos run')",
            id="full"
        ),
        pytest.param(FaultOwner(run="chaos-1"), "run chaos-1", id="run-only"),
        pytest.param(FaultOwner(host="ci"), "run ? (on ci)", id="host-only"),
        pytest.param(FaultOwner(), "run ?", id="empty"),
    ],
)
def test_fault_owner_describes_itself(owner: FaultOwner, text: str) -> None:
    assert owner.describe() == text
    fault = RouterFault("x", Version.CANARY, FaultKind.ABORT, 10, _T0, _T0, http_status=503, owner=owner)
    assert fault.describe() == f"abort 503 on 10% of canary requests, owned by {text}"
