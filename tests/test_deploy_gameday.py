"""deploy/gameday/: one `loadkit gameday run` per schedule, PID-1-safe, meshed, never overlapping,
with the plan from a ConfigMap, the history on a PVC and RBAC for exactly what the plan plays."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from loadkit.chaos import k8s
from loadkit.cli import cli
from loadkit.gameday.notify import DEADLINE_S, ENV_SLACK, ENV_WEBHOOK, destinations
from loadkit.gameday.plan import load_plan
from loadkit.load.runner import STOP_GRACE_S
from tests.conftest import ROOT
from tests.test_deploy import (
    cronjobs,
    documents,
    job_deadline,
    job_template,
    loadkit_args,
    parse_loadkit,
)

GAMEDAY = ROOT / "deploy" / "gameday"
EXPERIMENTS = ROOT / "experiments"
PLAN = EXPERIMENTS / "gamedays" / "bruno-site.yaml"
PLANS_MOUNT = "/plans"  # the ConfigMap, laid out as experiments/ is
HISTORY_MOUNT = "/var/lib/loadkit"
NO_PLAN = "experiments/gamedays/bruno-site.yaml ships with the game-day runner (loadkit gameday run)"
NO_GAMEDAY = "`loadkit gameday run` is not in this tree yet"

# What each activity the plan's experiments play needs in the canary's namespace: (group, resource) -> verbs.
ACTION_NEEDS: dict[tuple[str, str], dict[tuple[str, str], set[str]]] = {
    ("loadkit.chaos.probes", "thresholds_met"): {},  # loadkit's own load
    ("chaosk8s.pod.probes", "pods_in_phase"): {("", "pods"): {"list"}},
    ("loadkit.chaos.k8s", "kill_canary_pods"): {("", "pods"): {"list", "get", "delete"}},
    ("loadkit.chaos.k8s", "wait_for_canary_pods"): {("apps", "deployments"): {"get"}, ("", "pods"): {"list"}},
    ("loadkit.chaos.k8s", "add_canary_delay"): {("", "services"): {"get"},
                                                ("networking.istio.io", "virtualservices"): {"create", "list", "get"}},
    ("loadkit.chaos.k8s", "add_canary_abort"): {("", "services"): {"get"},
                                                ("networking.istio.io", "virtualservices"): {"create", "list", "get"}},
    ("loadkit.chaos.k8s", "add_dependency_abort"): {
        ("", "services"): {"get"}, ("networking.istio.io", "virtualservices"): {"create", "list", "get"}},
    ("loadkit.chaos.k8s", "remove_faults"): {("networking.istio.io", "virtualservices"): {"list", "delete"}},
    ("loadkit.chaos.k8s", "add_canary_network_fault"): {("chaos-mesh.org", "networkchaos"): {"create"}},
    ("loadkit.chaos.k8s", "add_canary_stress"): {("chaos-mesh.org", "stresschaos"): {"create"}},
}
# Every game day: loadkit's last-chance clean-up lists and deletes what its run left, of each kind
# of fault object it makes; the plan's network and resource faults are Chaos Mesh objects.
ALWAYS: dict[tuple[str, str], set[str]] = {
    ("networking.istio.io", "virtualservices"): {"list", "delete"},
    ("chaos-mesh.org", "networkchaos"): {"create", "get", "list", "delete"},
    ("chaos-mesh.org", "stresschaos"): {"create", "get", "list", "delete"},
}
GAMEDAY_ROLE = {
    ("", "pods"): {"get", "list", "delete"},
    ("apps", "deployments"): {"get"},
    ("", "services"): {"get"},
    ("networking.istio.io", "virtualservices"): {"create", "get", "list", "delete"},
    ("chaos-mesh.org", "networkchaos"): {"create", "get", "list", "delete"},
    ("chaos-mesh.org", "stresschaos"): {"create", "get", "list", "delete"},
}
# the halted and finished notifications, each to both destinations (Slack, webhook), each bounded
NOTIFY_BUDGET_S = 2 * 2 * DEADLINE_S


def gameday_documents(kind: str) -> list[dict[str, Any]]:
    [kustomization] = documents(GAMEDAY / "kustomization.yaml")
    return [doc for r in kustomization["resources"] if (GAMEDAY / r).is_file() for doc in documents(GAMEDAY / r)
            if doc["kind"] == kind]


def the_cronjob() -> dict[str, Any]:
    [cronjob] = gameday_documents("CronJob")
    return cronjob


def generator() -> dict[str, Any]:
    [kustomization] = documents(EXPERIMENTS / "Kustomization")
    [plans] = kustomization["configMapGenerator"]
    return dict(plans)


def plan_volume() -> dict[str, Any]:
    [volume] = [v for v in job_template(the_cronjob())["spec"]["volumes"] if "configMap" in v]
    return dict(volume)


def container() -> dict[str, Any]:
    [one] = job_template(the_cronjob())["spec"]["containers"]
    return dict(one)


def experiments_in_the_configmap() -> list[Path]:
    return [EXPERIMENTS / f for f in generator()["files"] if f != "gamedays/bruno-site.yaml"]


def activities(experiment: Path) -> list[dict[str, Any]]:
    [doc] = documents(experiment)
    hypothesis = doc.get("steady-state-hypothesis", {}).get("probes", [])
    return [a for a in [*hypothesis, *doc.get("method", []), *doc.get("rollbacks", [])] if "provider" in a]


def referenced_files(node: Any) -> set[Path]:
    """Files a plan names (any string ending in .yaml/.yml/.json), resolved as loadkit would: from the plan."""
    if isinstance(node, dict):
        return {p for value in node.values() for p in referenced_files(value)}
    if isinstance(node, list):
        return {p for value in node for p in referenced_files(value)}
    if isinstance(node, str) and node.endswith((".yaml", ".yml", ".json")) and "://" not in node:
        return {(PLAN.parent / node).resolve()}
    return set()


# -- the ConfigMap ----------------------------------------------------------------------------------

def test_the_gameday_kustomization_lists_files_that_exist() -> None:
    [kustomization] = documents(GAMEDAY / "kustomization.yaml")
    assert "namespace" not in kustomization, "it would move the Role and RoleBinding out of bruno"
    for resource in kustomization["resources"]:
        assert (GAMEDAY / resource).is_file() or (GAMEDAY / resource / "Kustomization").is_file(), resource
    listed = {GAMEDAY / r for r in kustomization["resources"] if (GAMEDAY / r).is_file()}
    assert listed == {p for p in GAMEDAY.glob("*.yaml") if p.name != "kustomization.yaml"}


def test_the_plan_configmap_holds_the_plan_and_existing_experiments() -> None:
    plans = generator()
    assert plans["name"] == plan_volume()["configMap"]["name"] == "loadkit-gameday-plans"
    assert "gamedays/bruno-site.yaml" in plans["files"]
    for experiment in experiments_in_the_configmap():
        assert experiment.is_file(), f"{experiment.relative_to(ROOT)} is in the ConfigMap but not shipped"
    assert {p.name for p in experiments_in_the_configmap()} >= {"pod-kill-canary.yaml", "latency-canary.yaml"}


def test_the_configmap_is_mounted_as_the_repository_lays_it_out() -> None:
    """A plan's relative path to an experiment resolves in the pod as it does in a checkout."""
    items = {item["key"]: item["path"] for item in plan_volume()["configMap"]["items"]}
    assert items == {Path(f).name: f for f in generator()["files"]}
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == plan_volume()["name"]]
    assert mount["mountPath"] == PLANS_MOUNT and mount["readOnly"] is True


@pytest.mark.skipif(not PLAN.is_file(), reason=NO_PLAN)
def test_every_file_the_plan_names_is_in_the_configmap() -> None:
    named = referenced_files(yaml.safe_load(PLAN.read_text()))
    assert named, "the plan names its experiments"
    shipped = {(EXPERIMENTS / f).resolve() for f in generator()["files"]}
    assert named <= shipped, f"add to experiments/Kustomization: {sorted(str(p) for p in named - shipped)}"


# -- the CronJob ------------------------------------------------------------------------------------

def test_one_gameday_run_of_the_mounted_plan_under_tini_with_the_history_on_the_pvc() -> None:
    args = loadkit_args(the_cronjob())  # image loadkit, no `command:` (tini stays PID 1)
    assert args[:3] == ["gameday", "run", f"{PLANS_MOUNT}/gamedays/bruno-site.yaml"]
    assert not any(a in ("sh", "bash", "-c") for a in args)
    options = dict(a.removeprefix("--").split("=", 1) for a in args[3:] if a.startswith("--") and "=" in a)
    assert options["db"] == f"{HISTORY_MOUNT}/loadkit.db"
    assert options["report-dir"].startswith(f"{HISTORY_MOUNT}/")
    template = job_template(the_cronjob())
    [history] = [v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v]
    [claim] = gameday_documents("PersistentVolumeClaim")
    assert history["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["name"] != "loadkit-store", "not the webhook's ReadWriteOnce claim"
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == history["name"]]
    assert mount["mountPath"] == HISTORY_MOUNT and not mount.get("readOnly")
    assert template["spec"]["securityContext"]["fsGroup"] == template["spec"]["securityContext"]["runAsUser"]
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.skipif("gameday" not in cli.commands, reason=NO_GAMEDAY)
def test_the_args_parse_with_loadkit() -> None:
    args = [str(PLAN) if a.startswith(PLANS_MOUNT) else a for a in loadkit_args(the_cronjob())]
    ctx = parse_loadkit(args)
    assert f"{HISTORY_MOUNT}/loadkit.db" in {str(v) for v in ctx.params.values()}


def test_one_game_day_at_a_time_never_started_late_and_bounded() -> None:
    cronjob = the_cronjob()
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] <= 3600
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert job_template(cronjob)["spec"]["restartPolicy"] == "Never"
    grace = job_template(cronjob)["spec"]["terminationGracePeriodSeconds"]
    assert job_deadline(cronjob) > grace + wall_clock_limit_s()


def wall_clock_limit_s() -> float:
    """The plan's wall-clock stop condition (`stop_conditions.max_duration`), read as loadkit reads it."""
    limit = load_plan(PLAN).spec.stop_conditions.max_duration
    assert limit, f"{PLAN.name} has no wall-clock limit (stop_conditions.max_duration): a scheduled game day needs one"
    return float(limit)


def rollback_need_s() -> float:
    """The longest the plan's rollbacks may take, plus loadkit's clean-up, Locust's stop and the notifications."""
    wait = inspect.signature(k8s.wait_for_canary_pods).parameters["timeout_s"].default
    longest = 0.0
    for experiment in experiments_in_the_configmap():
        [doc] = documents(experiment)
        for rollback in doc.get("rollbacks", []):
            if rollback["provider"].get("func") == "wait_for_canary_pods":
                longest = max(longest, float(rollback["provider"].get("arguments", {}).get("timeout_s", wait)))
    cleanup = sum(0.5 * 2 ** a for a in range(inspect.signature(k8s.delete_run_faults).parameters["attempts"].default))
    return longest + cleanup + STOP_GRACE_S + NOTIFY_BUDGET_S


def test_the_grace_period_covers_the_slowest_rollback() -> None:
    need = rollback_need_s()
    assert need > STOP_GRACE_S + NOTIFY_BUDGET_S, "the pod kill's rollback waits for the replacement pod"
    assert job_template(the_cronjob())["spec"]["terminationGracePeriodSeconds"] >= need


def test_the_load_goes_through_the_mesh_and_the_sidecar_lets_the_job_end() -> None:
    template = job_template(the_cronjob())
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    annotations = template["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/nativeSidecar"] == "true"
    assert json.loads(annotations["proxy.istio.io/config"]) == {"holdApplicationUntilProxyStarts": True}
    assert {"name": "CHAOSTOOLKIT_IN_POD", "value": "true"} in container()["env"]


def _cron_field(text: str, low: int, high: int) -> set[int]:
    """One field of a cron schedule (`*`, `*/n`, `a-b`, `a-b/n`, lists, numbers) as its values."""
    values: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        first, last = (low, high) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
        values |= set(range(first, last + 1, int(step or 1)))
    return values


def cron_starts(cronjob: dict[str, Any], days: int = 371) -> list[datetime]:
    """Every start of a CronJob over a year (UTC), in its timeZone, with cron's day rule: when both
    day-of-month and day-of-week are restricted, either matches."""
    minute, hour, dom, month, dow = cronjob["spec"]["schedule"].split()
    zone = ZoneInfo(cronjob["spec"].get("timeZone", "Etc/UTC"))
    minutes, hours = _cron_field(minute, 0, 59), _cron_field(hour, 0, 23)
    doms, months = _cron_field(dom, 1, 31), _cron_field(month, 1, 12)
    dows = {d % 7 for d in _cron_field(dow, 0, 7)}
    starts = []
    first = date(2027, 1, 1)
    for offset in range(days):
        day = first + timedelta(days=offset)
        in_dom, in_dow = day.day in doms, (day.isoweekday() % 7) in dows
        runs = (in_dom or in_dow) if dom != "*" and dow != "*" else (in_dom and in_dow)
        if runs and day.month in months:
            starts += [datetime(day.year, day.month, day.day, h, m, tzinfo=zone).astimezone(UTC)
                       for h in sorted(hours) for m in sorted(minutes)]
    return starts


def test_cron_starts_reads_days_as_cron_does() -> None:
    def job(schedule: str) -> dict[str, Any]:
        return {"spec": {"schedule": schedule, "timeZone": "Etc/UTC"}}

    tuesdays = cron_starts(job("0 14 * * 2"), days=14)
    assert [d.isoweekday() for d in tuesdays] == [2, 2] and {d.hour for d in tuesdays} == {14}
    assert len(cron_starts(job("30 13 * * *"), days=14)) == 14  # daily includes Tuesdays
    assert len(cron_starts(job("*/15 13-14 * * 1-5"), days=7)) == 5 * 8


def test_the_game_day_never_runs_while_a_single_experiment_job_may() -> None:
    gameday = the_cronjob()
    ours = [(start, start + timedelta(seconds=job_deadline(gameday))) for start in cron_starts(gameday)]
    assert ours, "the game day's schedule never runs"
    for name, cronjob in cronjobs().items():
        if name == gameday["metadata"]["name"] or loadkit_args(cronjob)[:2] != ["chaos", "run"]:
            continue
        deadline = timedelta(seconds=job_deadline(cronjob))
        for other in cron_starts(cronjob):
            for start, end in ours:
                assert not (other < end and start < other + deadline), \
                    f"{name} may run at {other:%a %H:%M} UTC, while the game day of {start:%a %H:%M} may"


def test_notification_urls_come_from_a_secret_never_the_manifest() -> None:
    notify = [e for e in container()["env"] if "NOTIFY" in e["name"]]
    assert {e["name"] for e in notify} == {ENV_SLACK, ENV_WEBHOOK}  # the variables loadkit reads
    for variable in notify:
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["optional"] is True and ref["name"] and "value" not in variable
    assert "://" not in json.dumps(the_cronjob()), "no URL in the manifest"


def test_the_notification_variables_become_destinations() -> None:
    env = {e["name"]: f"https://{e['valueFrom']['secretKeyRef']['key']}.example/hook"
           for e in container()["env"] if "NOTIFY" in e["name"]}
    found = destinations([], [], env)
    assert sorted((d.slack, d.url) for d in found) == [(False, "https://webhook.example/hook"),
                                                        (True, "https://slack.example/hook")]
