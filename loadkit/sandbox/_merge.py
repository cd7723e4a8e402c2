"""Merge metric families from several processes into one valid Prometheus exposition.

Every pod exports the same families (`http_requests_total`, ...). Concatenating their texts would
repeat each `# HELP`/`# TYPE` header, which Prometheus rejects, so samples of one family are
gathered under a single header instead. Pure apart from parsing and rendering text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def parse_exposition(text: str) -> list[Metric]:
    """Parse Prometheus text format; raises ValueError on malformed input."""
    return list(text_string_to_metric_families(text))


def merge_families(sources: Iterable[Iterable[Metric]]) -> list[Metric]:
    """One family per name, in first-seen order, with the samples of every source.

    A family whose type disagrees with the first one seen is dropped rather than emitted under
    the wrong TYPE; a sample repeated verbatim (same name and labels) is kept once, because
    Prometheus treats duplicates as a failed scrape.
    """
    merged: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for families in sources:
        for family in families:
            target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            if target.type != family.type:
                continue
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in seen:
                    seen.add(key)
                    target.samples.append(sample)
    return list(merged.values())


class _Families:
    """Fixed families, so `generate_latest` can render them without a registry."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render_exposition(families: list[Metric]) -> bytes:
    return generate_latest(_Families(families))
