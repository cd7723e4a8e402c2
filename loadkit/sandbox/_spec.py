"""Names and settings of the sandbox's two app versions, spelled the way Flagger spells them.

Flagger copies a Deployment `bruno-site` into `bruno-site-primary` and keeps the original name for
the canary; it routes through the services `bruno-site-primary` and `bruno-site-canary`. Using the
same names here means Flagger's built-in PromQL (and any query a user copied from their cluster)
runs unchanged against the sandbox's metrics.

Stdlib only: `loadkit.sandbox` re-exports from here and must stay cheap to import.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

APP = "bruno-site"
DEFAULT_NAMESPACE = "bruno"
CANARY_PREFIX = "/canary"
CANARY_HEADER = "x-canary"
CANARY_HEADER_VALUE = "insider"


class Version(enum.StrEnum):
    """The two app versions a Flagger canary analysis compares."""

    PRIMARY = "primary"
    CANARY = "canary"

    @property
    def workload(self) -> str:
        """Deployment name: Flagger renames the stable copy, the canary keeps the app's name."""
        return f"{APP}-primary" if self is Version.PRIMARY else APP

    @property
    def service(self) -> str:
        return f"{APP}-{self.value}"

    def service_fqdn(self, namespace: str) -> str:
        """Istio's `destination_service` label value."""
        return f"{self.service}.{namespace}.svc.cluster.local"

    def pod_name(self, index: int) -> str:
        return f"{self.workload}-{index}"


@dataclass(frozen=True)
class PodIdentity:
    """Who a pod is; every app metric and response header carries these names."""

    namespace: str
    version: Version
    index: int

    @property
    def name(self) -> str:
        return self.version.pod_name(self.index)

    @property
    def workload(self) -> str:
        return self.version.workload

    def labels(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "app": APP,
            "version": self.version.value,
            "workload": self.workload,
            "pod": self.name,
        }


@dataclass(frozen=True)
class VersionSpec:
    """How one version behaves: how many pods, and which faults it injects into its own answers."""

    version: Version
    pods: int = 2
    error_rate: float = 0.0
    latency_ms: int = 0


@dataclass(frozen=True)
class SandboxConfig:
    """Everything `loadkit sandbox up` needs; the CLI validates the values before building one.

    Example: `SandboxConfig(port=0, canary=VersionSpec(Version.CANARY, error_rate=0.1))`.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int | None = None
    namespace: str = DEFAULT_NAMESPACE
    canary_weight: int = 0
    primary: VersionSpec = field(default_factory=lambda: VersionSpec(Version.PRIMARY))
    canary: VersionSpec = field(default_factory=lambda: VersionSpec(Version.CANARY))

    @property
    def resolved_admin_port(self) -> int:
        """`--admin-port` defaults to the port after `--port`, or to any free port with `--port 0`."""
        if self.admin_port is not None:
            return self.admin_port
        return self.port + 1 if self.port else 0

    def spec(self, version: Version) -> VersionSpec:
        return self.primary if version is Version.PRIMARY else self.canary

    @property
    def versions(self) -> tuple[VersionSpec, VersionSpec]:
        return (self.primary, self.canary)
