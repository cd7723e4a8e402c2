"""A local stand-in for Istio + Flagger: the "bruno-site" app in two versions behind a router.

`loadkit sandbox up` runs it; `SandboxProcess` runs it from Python (tests, `loadkit demo`):

    from loadkit.sandbox import SandboxProcess

    with SandboxProcess(canary_error_rate=0.1) as sandbox:
        httpx.get(f"{sandbox.traffic_url}/canary/")   # always the canary
        httpx.get(sandbox.metrics_url)                # Istio + app metrics, Flagger's PromQL works

Layout: `_spec` names and settings · `_site`, `_shop`, `_pages`, `_app_metrics` the app a pod
serves (`pod` is its entry point) · `_faults` deterministic fault injection · `_pods` pod
processes, restarts and kills · `_routing`, `_router`, `_retries`, `_istio` the VirtualService
stand-in (routes, retries, timeouts) and its metrics · `_admin`, `_merge` the admin API,
`_chaos` its fault and pod-kill endpoints · `_supervisor` wires it all · `models` the wire format.

Only stdlib modules are imported here, so `import loadkit.sandbox` does not pull in aiohttp.
"""

from loadkit.sandbox._process import SandboxProcess
from loadkit.sandbox._spec import APP, SandboxConfig, Version, VersionSpec

__all__ = ["APP", "SandboxConfig", "SandboxProcess", "Version", "VersionSpec"]
