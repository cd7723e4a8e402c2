"""The fake Kubernetes API server, driven by the real `kubernetes` client and `chaosk8s`."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.chaos.fake_k8s import (
    ENV_KEYS_TO_UNSET,
    FakeKubernetes,
    json_merge_patch,
    label_selector_matches,
    parse_label_selector,
)

NS = "bruno"
CANARY, PRIMARY = "app=bruno-site", "app=bruno-site-primary"
VS_GROUP, VS_PLURAL = "networking.istio.io", "virtualservices"


@pytest.fixture
def k8s(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        fake.apply_env(monkeypatch)
        yield fake


def names(pods: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["name"] for p in pods}


# --- pure helpers ---------------------------------------------------------------------------------

LABELS = {"app": "bruno-site", "pod-template-hash": "abc", "tier": "web"}


@pytest.mark.parametrize(("selector", "expected"), [
    ("", True),
    ("app=bruno-site", True),
    ("app==bruno-site", True),
    ("app=bruno-site-primary", False),
    ("app!=bruno-site", False),
    ("app!=other", True),
    ("missing!=x", True),
    ("app in (bruno-site, other)", True),
    ("app in (other)", False),
    ("app notin (bruno-site)", False),
    ("missing notin (x)", True),
    ("tier", True),
    ("missing", False),
    ("!missing", True),
    ("!tier", False),
    ("app=bruno-site,tier=web", True),
    ("app=bruno-site, tier=db", False),
    ("app in (bruno-site,x),tier notin (db),pod-template-hash", True),
    ("example.com/team=x", False),
], ids=lambda v: repr(v) if isinstance(v, str) else None)
def test_label_selector_matching(selector: str, expected: bool) -> None:
    assert label_selector_matches(selector, LABELS) is expected


@pytest.mark.parametrize("selector", [
    "=x", "app in ()", "app in (a", "app in a,b)", "app=a,", "app=a b", "app in (a b)", "app ~ b", "app=(a)",
], ids=str)
def test_bad_label_selectors_are_errors(selector: str) -> None:
    with pytest.raises(ValueError, match="label selector"):
        parse_label_selector(selector)


def test_empty_value_is_a_valid_equality() -> None:
    assert label_selector_matches("app=", {"app": ""})
    assert not label_selector_matches("app=", {"app": "x"})


# RFC 7386 appendix A, plus nested objects.
@pytest.mark.parametrize(("target", "patch", "expected"), [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_json_merge_patch(target: Any, patch: Any, expected: Any) -> None:
    assert json_merge_patch(target, patch) == expected


# --- the kubernetes client ------------------------------------------------------------------------

def test_lists_flagger_layout_with_the_real_client(k8s: FakeKubernetes) -> None:
    v1 = client.CoreV1Api(k8s.api_client())
    canary = v1.list_namespaced_pod(NS, label_selector=CANARY)
    assert canary.kind == "PodList" and len(canary.items) == 2
    for pod in canary.items:
        hash_ = pod.metadata.labels["pod-template-hash"]
        assert pod.metadata.name.startswith(f"bruno-site-{hash_}-") and len(pod.metadata.name.split("-")[-1]) == 5
        assert pod.status.phase == "Running" and pod.status.pod_ip
        assert {(c.type, c.status) for c in pod.status.conditions} >= {("Ready", "True")}
        assert pod.spec.containers[0].image == "bruno-site:1"
    assert [p.metadata.name for p in canary.items] == sorted(p.metadata.name for p in canary.items)
    assert len(v1.list_namespaced_pod(NS, label_selector=PRIMARY).items) == 2
    assert len(v1.list_pod_for_all_namespaces(label_selector="app in (bruno-site,bruno-site-primary)").items) == 4
    assert v1.list_namespaced_pod("elsewhere").items == []
    one = canary.items[0].metadata.name
    assert v1.read_namespaced_pod(one, NS).metadata.uid == canary.items[0].metadata.uid

    apps = client.AppsV1Api(k8s.api_client())
    dep = apps.read_namespaced_deployment("bruno-site", NS)
    assert dep.spec.replicas == 2 and dep.spec.selector.match_labels == {"app": "bruno-site"}
    assert dep.status.ready_replicas == dep.status.available_replicas == dep.status.updated_replicas == 2
    assert [d.metadata.name for d in apps.list_namespaced_deployment(NS).items] == ["bruno-site", "bruno-site-primary"]
    assert k8s.unexpected_requests == []


def test_missing_pods_bad_selectors_and_unknown_paths_are_status_errors(k8s: FakeKubernetes) -> None:
    v1 = client.CoreV1Api(k8s.api_client())
    with pytest.raises(ApiException) as missing:
        v1.delete_namespaced_pod("nope", NS)
    assert missing.value.status == 404
    assert '"reason":"NotFound"' in missing.value.body.replace(" ", "")
    with pytest.raises(ApiException) as bad:
        v1.list_namespaced_pod(NS, label_selector="app in (x")
    assert bad.value.status == 400
    assert k8s.unexpected_requests == []
    with pytest.raises(ApiException) as unknown:
        v1.list_namespaced_config_map(NS)
    assert unknown.value.status == 404
    assert k8s.unexpected_requests == [("GET", f"/api/v1/namespaces/{NS}/configmaps")]
    assert ("GET", f"/api/v1/namespaces/{NS}/configmaps") in k8s.requests


def test_watch_streams_while_other_requests_are_served() -> None:
    with FakeKubernetes(recreate_after_s=0.05, ready_after_s=0.05) as k8s:
        v1 = client.CoreV1Api(k8s.api_client())
        events: list[tuple[str, str, str]] = []
        seen_initial = threading.Event()

        def watch_pods() -> None:
            w = watch.Watch()
            for event in w.stream(v1.list_namespaced_pod, NS, label_selector=CANARY, timeout_seconds=10):
                events.append((event["type"], event["object"].metadata.name, event["object"].status.phase))
                if len(events) == 2:
                    seen_initial.set()
                if event["type"] == "MODIFIED" and event["object"].status.phase == "Running":
                    w.stop()

        watcher = threading.Thread(target=watch_pods)
        watcher.start()
        assert seen_initial.wait(5)
        victim = k8s.pods(NS, CANARY)[0]["metadata"]["name"]
        v1.delete_namespaced_pod(victim, NS)  # served while the watch stays open
        watcher.join(5)
        assert not watcher.is_alive()
    new = events[-1][1]
    assert [(kind, phase) for kind, _, phase in events] == [
        ("ADDED", "Running"), ("ADDED", "Running"), ("DELETED", "Running"), ("ADDED", "Pending"),
        ("MODIFIED", "Running")]
    assert events[2][1] == victim and events[3][1] == new and new not in {e[1] for e in events[:2]}


def test_watch_resumes_after_a_resource_version(k8s: FakeKubernetes) -> None:
    v1 = client.CoreV1Api(k8s.api_client())
    listed = v1.list_namespaced_pod(NS, label_selector=PRIMARY)
    victim = listed.items[0].metadata.name
    v1.delete_namespaced_pod(victim, NS)
    w = watch.Watch()
    stream = w.stream(v1.list_namespaced_pod, NS, label_selector=PRIMARY,
                      resource_version=listed.metadata.resource_version, timeout_seconds=5)
    first = next(stream)
    w.stop()
    assert (first["type"], first["object"].metadata.name) == ("DELETED", victim)


# --- chaosk8s -----------------------------------------------------------------------------------

def test_env_points_chaosk8s_at_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    from chaosk8s import create_k8s_api_client

    monkeypatch.setenv("CHAOSTOOLKIT_IN_POD", "true")
    monkeypatch.setenv("KUBERNETES_API_KEY", "someone-elses")
    with FakeKubernetes() as k8s:
        k8s.apply_env(monkeypatch)
        assert not os.path.exists(os.environ["KUBECONFIG"])
        assert not set(ENV_KEYS_TO_UNSET) & set(os.environ)
        config = create_k8s_api_client().configuration
        assert config.host == k8s.url and not config.verify_ssl and "authorization" not in config.api_key
        env = k8s.subprocess_env({"PATH": "/bin", "CHAOSTOOLKIT_IN_POD": "true"})
        assert env == {"PATH": "/bin", **k8s.env()}


def test_terminate_pods_kills_one_canary_pod_and_the_controller_replaces_it(k8s: FakeKubernetes) -> None:
    from chaosk8s.deployment.probes import deployment_available_and_healthy
    from chaosk8s.pod.actions import terminate_pods
    from chaosk8s.pod.probes import pods_in_phase

    canary, primary = names(k8s.pods(NS, CANARY)), names(k8s.pods(NS, PRIMARY))
    assert deployment_available_and_healthy("bruno-site", ns=NS) is True

    killed = terminate_pods(label_selector=CANARY, ns=NS, qty=1)

    assert killed == k8s.deleted_pods == [sorted(canary)[0]]
    assert names(k8s.pods(NS, PRIMARY)) == primary
    replaced = k8s.wait_for(lambda: names(k8s.pods(NS, CANARY)) - canary, timeout=5, what="a replacement pod")
    assert len(replaced) == 1 and killed[0] not in names(k8s.pods(NS, CANARY))
    k8s.wait_for(lambda: pods_in_phase(label_selector=CANARY, phase="Running", ns=NS,
                                       raise_on_invalid_phase=False), timeout=5, what="all canary pods Running")
    assert pods_in_phase(label_selector=CANARY, phase="Running", ns=NS) is True
    assert deployment_available_and_healthy("bruno-site", ns=NS) is True
    assert len(k8s.pods(NS, CANARY)) == 2 and names(k8s.pods(NS, PRIMARY)) == primary
    assert ("DELETE", f"/api/v1/namespaces/{NS}/pods/{killed[0]}") in k8s.requests
    assert k8s.unexpected_requests == []


def test_probes_see_the_gap_before_the_replacement_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    from chaosk8s.deployment.probes import deployment_available_and_healthy
    from chaosk8s.pod.actions import terminate_pods
    from chaosk8s.pod.probes import count_pods, pods_in_phase
    from chaoslib.exceptions import ActivityFailed

    with FakeKubernetes(recreate_after_s=0.0, ready_after_s=60) as k8s:
        k8s.apply_env(monkeypatch)
        terminate_pods(label_selector=PRIMARY, ns=NS, qty=1, grace_period=0)
        k8s.wait_for(lambda: len(k8s.pods(NS, PRIMARY)) == 2, timeout=5)
        assert count_pods(label_selector=PRIMARY, phase="Pending", ns=NS) == 1
        assert pods_in_phase(label_selector=PRIMARY, ns=NS, raise_on_invalid_phase=False) is False
        with pytest.raises(ActivityFailed, match="not healthy"):
            deployment_available_and_healthy("bruno-site-primary", ns=NS)
        assert deployment_available_and_healthy("bruno-site", ns=NS) is True  # the other deployment


def test_deployment_watch_probe_sees_recovery(k8s: FakeKubernetes) -> None:
    from chaosk8s.deployment.probes import deployment_fully_available
    from chaosk8s.pod.actions import terminate_pods

    terminate_pods(label_selector=CANARY, ns=NS, all=True)
    assert deployment_fully_available("bruno-site", ns=NS, timeout=5) is True
    assert k8s.deployment(NS, "bruno-site")["status"]["readyReplicas"] == 2
    assert len(k8s.deleted_pods) == 2


def test_scale_deployment_patches_and_the_controller_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    from chaosk8s.deployment.actions import scale_deployment

    with FakeKubernetes(recreate_after_s=0.05, ready_after_s=0.05) as k8s:
        k8s.apply_env(monkeypatch)
        scale_deployment("bruno-site", 0, ns=NS)
        assert k8s.pods(NS, CANARY) == []
        status = client.AppsV1Api(k8s.api_client()).read_namespaced_deployment("bruno-site", NS).status
        assert status.available_replicas is None  # the API server omits zero counts
        scale_deployment("bruno-site", 3, ns=NS)
        k8s.wait_for(lambda: k8s.deployment(NS, "bruno-site")["status"].get("readyReplicas") == 3, timeout=5)
        assert k8s.deleted_pods == []  # scale-downs are the controller's, not API deletions


# --- VirtualServices ----------------------------------------------------------------------------

def vs_body(name: str, version: str = "v1beta1", **labels: str) -> dict[str, Any]:
    return {"apiVersion": f"{VS_GROUP}/{version}", "kind": "VirtualService",
            "metadata": {"name": name, "labels": labels},
            "spec": {"hosts": ["bruno-site"], "http": [{"route": [{"destination": {"host": "bruno-site-primary"}}]}]}}


@pytest.mark.parametrize("version", ["v1beta1", "v1alpha3"])
def test_virtualservice_round_trip_with_custom_objects_api(k8s: FakeKubernetes, version: str) -> None:
    api = client.CustomObjectsApi(k8s.api_client())
    args = (VS_GROUP, version, NS, VS_PLURAL)

    created = api.create_namespaced_custom_object(*args, vs_body("loadkit-fault", version, owner="loadkit"))
    meta = created["metadata"]
    assert meta["namespace"] == NS and meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    api.create_namespaced_custom_object(*args, vs_body("bruno-site", version))
    assert api.get_namespaced_custom_object(*args, "loadkit-fault")["metadata"]["uid"] == meta["uid"]
    listed = api.list_namespaced_custom_object(*args, label_selector="owner=loadkit")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["loadkit-fault"]
    assert listed["kind"] == "VirtualServiceList" and listed["apiVersion"] == f"{VS_GROUP}/{version}"

    fault = {"abort": {"httpStatus": 503, "percentage": {"value": 50.0}}}
    patched = api.patch_namespaced_custom_object(*args, "loadkit-fault", {
        "spec": {"http": [{"fault": fault, "route": [{"destination": {"host": "bruno-site"}}]}]},
        "metadata": {"labels": {"owner": None}}})
    assert patched["spec"]["hosts"] == ["bruno-site"] and patched["spec"]["http"][0]["fault"] == fault
    assert "owner" not in patched["metadata"]["labels"]
    assert int(patched["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert patched["metadata"]["generation"] == 2

    with pytest.raises(ApiException) as exists:
        api.create_namespaced_custom_object(*args, vs_body("loadkit-fault", version))
    assert exists.value.status == 409 and "AlreadyExists" in exists.value.body

    status = api.delete_namespaced_custom_object(*args, "loadkit-fault")
    assert status["kind"] == "Status" and status["status"] == "Success"
    for call in (api.get_namespaced_custom_object, api.delete_namespaced_custom_object):
        with pytest.raises(ApiException) as gone:
            call(*args, "loadkit-fault")
        assert gone.value.status == 404 and "NotFound" in gone.value.body
    with pytest.raises(ApiException) as gone:
        api.patch_namespaced_custom_object(*args, "loadkit-fault", {"spec": {}})
    assert gone.value.status == 404
    assert [vs["metadata"]["name"] for vs in k8s.virtualservices(NS)] == ["bruno-site"]
    assert k8s.unexpected_requests == []


def test_replace_needs_the_current_resource_version(k8s: FakeKubernetes) -> None:
    api = client.CustomObjectsApi(k8s.api_client())
    args = (VS_GROUP, "v1beta1", NS, VS_PLURAL)
    current = api.create_namespaced_custom_object(*args, vs_body("bruno-site"))
    current["spec"]["hosts"] = ["bruno.example.com"]
    replaced = api.replace_namespaced_custom_object(*args, "bruno-site", current)
    assert replaced["spec"]["hosts"] == ["bruno.example.com"]
    with pytest.raises(ApiException) as stale:
        api.replace_namespaced_custom_object(*args, "bruno-site", current)  # the old resourceVersion
    assert stale.value.status == 409 and "Conflict" in stale.value.body
    with pytest.raises(ApiException) as wrong_kind:
        api.create_namespaced_custom_object(*args, {**vs_body("x"), "kind": "DestinationRule"})
    assert wrong_kind.value.status == 400


def test_planted_leftovers_are_listed_cluster_wide(k8s: FakeKubernetes) -> None:
    k8s.plant_virtualservice("bruno", "loadkit-old", {"app.kubernetes.io/managed-by": "loadkit"}, {"hosts": ["a"]})
    k8s.plant_virtualservice("other", "loadkit-older", {"app.kubernetes.io/managed-by": "loadkit"}, {"hosts": ["b"]})
    k8s.plant_virtualservice("other", "theirs", {}, {"hosts": ["c"]})
    api = client.CustomObjectsApi(k8s.api_client())
    found = api.list_cluster_custom_object(VS_GROUP, "v1alpha3", VS_PLURAL,
                                           label_selector="app.kubernetes.io/managed-by=loadkit")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in found["items"]] == [
        ("bruno", "loadkit-old"), ("other", "loadkit-older")]
    assert {o["apiVersion"] for o in found["items"]} == {f"{VS_GROUP}/v1alpha3"}
    assert len(k8s.virtualservices()) == 3 and len(k8s.virtualservices("other")) == 2


def test_a_deleted_pod_is_terminating_before_it_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the API server: a deletionTimestamp, still listed, not Ready; the controller replaces it
    without waiting (it does not count a Terminating pod), and loadkit's kill counts skip it."""
    from chaosk8s.pod.actions import terminate_pods

    from loadkit.chaos import guards
    from loadkit.chaos import k8s as loadkit_k8s

    with FakeKubernetes(recreate_after_s=0.2, terminate_after_s=1.5) as fake:
        fake.apply_env(monkeypatch)
        guards.set_active(guards.Guards(run_id="t"))
        try:
            [killed] = terminate_pods(label_selector=CANARY, ns=NS, qty=1)
            pod = next(p for p in fake.pods(NS, CANARY) if p["metadata"]["name"] == killed)
            assert pod["metadata"]["deletionTimestamp"]
            assert loadkit_k8s.pods_going([killed], NS) == [killed]
            fake.wait_for(lambda: len(fake.pods(NS, CANARY)) == 3, timeout=5, what="the replacement beside it")
            running = {p.metadata.name for p in loadkit_k8s.running_pods(CANARY, NS)}
            assert killed not in running
            fake.wait_for(lambda: killed not in names(fake.pods(NS, CANARY)), timeout=5, what="the pod gone")
            assert loadkit_k8s.pods_going([killed], NS) == [killed]  # 404: gone
        finally:
            guards.set_active(None)
