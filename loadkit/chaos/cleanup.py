"""`loadkit chaos cleanup`: find and remove what loadkit left in a cluster or the sandbox.

It cleans whatever it can reach and says what it could not. Kubernetes is skipped with a note
when none is configured (no kubeconfig, no KUBERNETES_HOST, not in a pod); everything works
within namespace-scoped permissions (`--namespace`, repeatable). A fault is removed when its
owner is proven gone (its process ended on this machine), when it expired, when it has no owner
at all, or when its run is named with `--run`; one whose run is still going, or may be (it runs
on another machine or in another PID namespace, where its pid says nothing), is kept until it
expires, and the report says why and names the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from chaoslib.exceptions import ActivityFailed


@dataclass
class CleanupReport:
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # what could not be checked or removed

    def lines(self) -> list[str]:
        done = self.removed or ([] if self.failed else ["nothing left behind"])
        return [*done, *self.notes, *(f"could not clean: {f}" for f in self.failed)]


def remove_everything(namespaces: tuple[str, ...], sandbox_admin_url: str | None, kubernetes: bool = True,
                      expired_only: bool = False, run: str | None = None) -> CleanupReport:
    report = CleanupReport()
    if kubernetes:
        _kubernetes(namespaces, expired_only, run, report)
    sandbox = sandbox_admin_url or os.environ.get("LOADKIT_SANDBOX_ADMIN_URL")
    if sandbox:
        _sandbox(sandbox, expired_only, run, report)
    _host(report)
    return report


def _host(report: CleanupReport) -> None:
    """nft tables and cgroups a sandbox supervisor killed with `kill -9` left on this machine
    (expired, or their supervisor is gone); a live sandbox's own are removed through its API above."""
    from loadkit.sandbox import _hostfaults

    try:
        report.removed += [f"removed {what} (a dead sandbox's leftover)" for what in _hostfaults.reap()]
    except OSError as exc:
        report.failed.append(f"this machine's nft tables and cgroups: {exc}")


def kubernetes_configured() -> bool:
    """What chaosk8s would use: a kubeconfig file, KUBERNETES_HOST, or a pod's service account."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    in_pod = os.environ.get("CHAOSTOOLKIT_IN_POD") == "true" or bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    return any(Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p) or bool(
        os.environ.get("KUBERNETES_HOST")) or in_pod


def _kubernetes(namespaces: tuple[str, ...], expired_only: bool, run: str | None, report: CleanupReport) -> None:
    if not kubernetes_configured():
        report.notes.append("Kubernetes: none configured (no kubeconfig, KUBERNETES_HOST or in-cluster service "
                            "account): skipped")
        return
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    from loadkit.chaos import k8s

    for ns in namespaces or (None,):
        where = f"namespace {ns}" if ns else "every namespace"
        try:
            removed, kept = k8s.cleanup(ns, expired_only=expired_only, run=run)
            report.removed += [f"removed VirtualService {name}" for name in removed]
            report.notes += kept
        except ApiException as exc:
            hint = " (pass --namespace NS for each namespace loadkit may act in)" if exc.status == 403 and not ns \
                else ""
            report.failed.append(f"Kubernetes, {where}: {exc.status} {exc.reason}{hint}")
        except (HTTPError, ActivityFailed, OSError) as exc:
            report.failed.append(f"Kubernetes, {where}: cannot reach the API ({_short(exc)}): check the kubeconfig "
                                 "or KUBERNETES_HOST, or pass --skip-kubernetes")


def _sandbox(admin_url: str, expired_only: bool, run: str | None, report: CleanupReport) -> None:
    from loadkit.chaos import guards as guard

    guard.set_active(guard.Guards(sandbox_admin_url=admin_url))  # the operator named this sandbox
    try:
        _sandbox_faults(admin_url, expired_only, run, report)
    finally:
        guard.set_active(None)


def _sandbox_faults(admin_url: str, expired_only: bool, run: str | None, report: CleanupReport) -> None:
    from loadkit.chaos import sandbox

    try:
        faults = sandbox.list_faults(admin_url=admin_url)
    except ActivityFailed as exc:
        report.failed.append(f"the sandbox at {admin_url}: {exc} (is it up? loadkit sandbox up)")
        return
    for fault in faults:
        owner = fault.get("owner") or {}
        what = f"sandbox fault {fault['id']} ({fault['kind']} on {fault['version']})"
        if run is not None and owner.get("run") != run:
            continue
        if expired_only and run is None and not owner:
            continue  # the sandbox expires it itself; with no owner to check, leave it to its TTL
        alive = sandbox.owner_alive(owner) if owner else False
        if run is None and alive is not False:
            state = "is still going" if alive else (f"may still be going (pid {owner.get('pid')} on "
                                                    f"{owner.get('host')}, which this machine cannot check)")
            if not expired_only:
                report.notes.append(f"kept {what}: its run {owner.get('run')} {state}; it expires by itself at "
                                    f"{fault.get('expires_at')} (remove it now with --run {owner.get('run')})")
            continue
        try:
            sandbox.delete_fault(str(fault["id"]), admin_url)
            report.removed.append(f"removed {what}")
        except ActivityFailed as exc:
            report.failed.append(f"{what}: {exc}")


def _short(exc: BaseException) -> str:
    """urllib3's errors nest the reason several levels deep: the last words of the innermost one."""
    reason: BaseException = exc
    while isinstance(getattr(reason, "reason", None), BaseException):
        reason = reason.reason  # type: ignore[attr-defined]
    return str(reason).rsplit(": ", 1)[-1][:200] or type(reason).__name__
