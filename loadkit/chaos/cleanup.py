"""`loadkit chaos cleanup`: find and remove whatever loadkit left in a cluster or the sandbox."""

from __future__ import annotations

from chaoslib.exceptions import ActivityFailed

from loadkit.errors import TargetError


def remove_everything(namespace: str | None, sandbox_admin_url: str | None, kubernetes: bool = True) -> list[str]:
    """Lines describing what was removed (or that nothing was)."""
    lines: list[str] = []
    if kubernetes:
        lines += [f"removed VirtualService {name}" for name in _kubernetes(namespace)]
    if sandbox_admin_url:
        lines += _sandbox(sandbox_admin_url)
    return lines or ["nothing left behind"]


def _kubernetes(namespace: str | None) -> list[str]:
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    from loadkit.chaos import k8s

    try:
        return k8s.cleanup(namespace)
    except (ApiException, HTTPError, ActivityFailed, OSError) as exc:
        raise TargetError(f"cannot clean up through the Kubernetes API: {exc}",
                          hint="check your kubeconfig / KUBERNETES_HOST, or pass --skip-kubernetes") from None


def _sandbox(admin_url: str) -> list[str]:
    from loadkit.chaos import sandbox

    try:
        faults = sandbox.list_faults(admin_url=admin_url)
        sandbox.remove_faults(admin_url=admin_url)
    except ActivityFailed as exc:
        raise TargetError(str(exc), hint="is the sandbox up? (loadkit sandbox up)") from None
    return [f"removed sandbox fault {f['id']} ({f['kind']} on {f['version']})" for f in faults]
