"""Analysis providers behind one port: each turns a window of the release's life into evidence.

- ``http``: the controller probes the new version (the slot's own host name) and the stable version
  (production, pinned with ``x-ms-routing-name=self``) itself; reports what it saw this tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.probes import HttpProber, url_for
from shared.domain.model import Measurement, ProviderKind, ProviderSpec, Release, SlotObservation, VersionStats

if TYPE_CHECKING:
    from shared.settings import Settings

PROBE_TIMEOUT_SECONDS = 5.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def probe_stats(prober: HttpProber, url: str, count: int, cookies: dict[str, str] | None = None) -> VersionStats:
    """``count`` GETs: errors are 5xx answers or no answer; latency is the p95 of answered requests."""
    latencies: list[float] = []
    errors = 0
    for _ in range(count):
        result = prober.get(url, timeout=PROBE_TIMEOUT_SECONDS, cookies=cookies)
        if result.status is None or result.status >= 500:
            errors += 1
        if result.status is not None:
            latencies.append(result.latency_ms)
    return VersionStats(requests=count, errors=errors, latency_ms=percentile(latencies, 95))


class HttpProvider:
    kind = ProviderKind.HTTP

    def __init__(self, prober: HttpProber):
        self.prober = prober

    def measure(
        self, release: Release, slots: SlotObservation, spec: ProviderSpec, window_start: datetime, now: datetime
    ) -> Measurement:
        canary_host = slots.staging_host
        stable_host = slots.production_host
        promoted = slots.production_release == release.id
        if promoted:
            # Guard window: the new version is production; nothing else takes traffic to compare.
            canary = probe_stats(
                self.prober,
                url_for(stable_host or "", spec.path),
                spec.requests_per_tick,
                {"x-ms-routing-name": "self"},
            )
            return Measurement(ProviderKind.HTTP, canary, VersionStats(), "p95", cumulative=False)
        canary = probe_stats(self.prober, url_for(canary_host or "", spec.path), spec.requests_per_tick)
        stable = probe_stats(
            self.prober, url_for(stable_host or "", spec.path), spec.requests_per_tick, {"x-ms-routing-name": "self"}
        )
        return Measurement(ProviderKind.HTTP, canary, stable, "p95", cumulative=False)


class ProviderAnalyzer:
    """Runs every provider the release asks for and returns their measurements."""

    def __init__(self, providers: dict[ProviderKind, Any]):
        self.providers = providers

    @classmethod
    def from_settings(cls, settings: Settings, platform: Any) -> ProviderAnalyzer:
        prober = HttpProber(settings.probe_ca_bundle)
        return cls({ProviderKind.HTTP: HttpProvider(prober)})

    def measure(
        self,
        release: Release,
        slots: SlotObservation,
        providers: tuple[ProviderSpec, ...],
        window_start: datetime,
        now: datetime,
    ) -> tuple[Measurement, ...]:
        out = []
        for spec in providers:
            provider: Callable[..., Measurement] | None = getattr(self.providers.get(spec.kind), "measure", None)
            if provider is None:
                continue
            out.append(provider(release, slots, spec, window_start, now))
        return tuple(out)
