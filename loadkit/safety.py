"""Safety facts shared by the webhook and chaos guards: which namespaces are the cluster's own.

Load and faults aimed at these would hit the platform itself (the API server, DNS, the mesh's
control plane, Flux, Flagger, Prometheus), so both refuse them unless an operator allows a
namespace explicitly (`--allow-namespace`).
"""

from __future__ import annotations

import re

SYSTEM_NAMESPACES = re.compile(r"kube-system|kube-public|kube-node-lease|istio-system|flagger-system|flux-system|"
                               r"linkerd|cert-manager|monitoring")
# The Kubernetes API server's Service: never a load target by default, whatever calls itself "kubernetes".
API_SERVER_HOSTS = re.compile(r"kubernetes\.default(\.svc(\.cluster\.local)?)?")


def is_system_namespace(namespace: str) -> bool:
    return SYSTEM_NAMESPACES.fullmatch(namespace) is not None
