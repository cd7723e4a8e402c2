"""PromQL: Flagger's built-in Istio queries and MetricTemplate-style templates. Pure text, no I/O.

Templates use Flagger's variables: {{ namespace }}, {{ target }} (the canary workload, e.g.
`bruno-site`), {{ name }} and {{ service }} (the same, outside Flagger), {{ interval }} (a PromQL
duration such as `1m`) and {{ variables.NAME }} (a check's `templateVariables`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from loadkit.errors import ConfigError
from loadkit.models.specs import Metric

_ISTIO = 'reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"'

# Flagger's pkg/metrics/observers/istio.go, verbatim apart from whitespace.
REQUEST_SUCCESS_RATE = (
    f'sum(rate(istio_requests_total{{{_ISTIO},response_code!~"5.*"}}[{{{{ interval }}}}])) '
    f"/ sum(rate(istio_requests_total{{{_ISTIO}}}[{{{{ interval }}}}])) * 100"
)
REQUEST_DURATION = (
    f"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{{_ISTIO}}}"
    f"[{{{{ interval }}}}])) by (le))"
)


def _quantile(q: float) -> str:
    return REQUEST_DURATION.replace("histogram_quantile(0.99,", f"histogram_quantile({q},")


# Flagger's two, plus siblings over the same Istio series for the other built-in metric names.
BUILTIN_QUERIES: dict[Metric, str] = {
    Metric.REQUEST_SUCCESS_RATE: REQUEST_SUCCESS_RATE,
    Metric.REQUEST_DURATION: REQUEST_DURATION,
    Metric.ERROR_RATE: f"100 - ({REQUEST_SUCCESS_RATE})",
    Metric.LATENCY_P50: _quantile(0.5),
    Metric.LATENCY_P95: _quantile(0.95),
    Metric.LATENCY_P99: REQUEST_DURATION,
    Metric.RPS: f"sum(rate(istio_requests_total{{{_ISTIO}}}[{{{{ interval }}}}]))",
}

# Canary-vs-baseline comparison: the raw counters, every series on its own, differenced by loadkit
# per series (a pod restart resets only its own counters; a series born in the window counts from
# 0, as a new 503 series of a failing canary must) rather than summed first or rate()d.
COMPARE_LATENCY_SUM = f"istio_request_duration_milliseconds_sum{{{_ISTIO}}}"
COMPARE_LATENCY_COUNT = f"istio_request_duration_milliseconds_count{{{_ISTIO}}}"
COMPARE_REQUESTS = f"istio_requests_total{{{_ISTIO}}}"


_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^(?:variables\.)?[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class QueryVars:
    namespace: str
    target: str
    interval_s: float
    variables: Mapping[str, str] = field(default_factory=dict)


def promql_duration(seconds: float) -> str:
    """60 -> '1m', 90 -> '90s', 0.5 -> '500ms': a duration PromQL accepts."""
    ms = round(seconds * 1000)
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def render(template: str, values: QueryVars, *, check: str) -> str:
    """Fill a query template; an unknown or malformed placeholder is a ConfigError naming the check."""
    known = {"namespace": values.namespace, "target": values.target, "name": values.target,
             "service": values.target, "interval": promql_duration(values.interval_s)}

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if not _NAME.match(key):
            raise ConfigError(f"check {check!r}: cannot read the template placeholder {match.group(0)!r} in its query",
                              hint="write placeholders as {{ namespace }}, {{ target }}, {{ interval }} or "
                                   "{{ variables.NAME }}")
        if key.startswith("variables."):
            name = key.removeprefix("variables.")
            if name not in values.variables:
                given = ", ".join(sorted(values.variables)) or "none"
                raise ConfigError(f"check {check!r}: its query uses {{{{ {key} }}}} but templateVariables has no "
                                  f"{name!r} (given: {given})",
                                  hint=f"add templateVariables: {{{name}: ...}} to the check")
            return values.variables[name]
        if key not in known:
            raise ConfigError(f"check {check!r}: unknown template variable {{{{ {key} }}}} in its query",
                              hint="use {{ namespace }}, {{ target }}, {{ name }}, {{ service }}, {{ interval }} "
                                   "or {{ variables.NAME }}")
        return known[key]

    return _PLACEHOLDER.sub(fill, template)
