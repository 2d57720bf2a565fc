"""glia's metrics in Synapse's own Prometheus registry.

Synapse serves prometheus_client's default `REGISTRY` on its metrics listener. The collector
registered here reads the embedded glia's metrics when Synapse's listener is scraped (the text
glia's own `GET /metrics` serves) and yields them as prometheus_client's metric families, so
the `glia_*` series come out of Synapse's `/metrics` with no listener of glia's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry


class GliaCollector(Collector):
    """Yields glia's metric families, read anew at each scrape."""

    def __init__(self, read: Callable[[], str | None]) -> None:
        #: glia's metrics in the text format, or None when its config turned them off.
        self._read = read

    def collect(self) -> Iterable[Metric]:
        text = self._read()
        if text is None:
            return []
        return list(text_string_to_metric_families(text))

    def describe(self) -> Iterable[Metric]:
        # No names up front: glia's families and their labels follow its config (modules
        # come and go on reload), and none clash with Synapse's `synapse_*` ones.
        return []


def register(read: Callable[[], str | None], registry: CollectorRegistry = REGISTRY) -> GliaCollector:
    """Registers a collector of glia's metrics in `registry` (Synapse's: the default one)."""
    collector = GliaCollector(read)
    registry.register(collector)
    return collector
