"""Detection: time from a bad canary's first bad request to weight 0, against the statistical minimum.

A canary that fails 20 % of its requests gets ``weight`` % of a site's ``rate`` requests/s from
the moment its step's routing rule is applied. No verdict can come before it has served
``minRequests`` requests: the minimum is ``minRequests / (rate × weight)``. The controller is
driven exactly as its workers drive it: each reconcile runs at the due time its last save set (the
work message's visibility), on the in-memory platform and store, with the clock moved to each due
time. The analyzer reports what that traffic would have produced over the analysis window. The
target is at most 1.5 × the minimum plus one scheduling delay (``analysis.interval``).

    python -m benchmarks detection
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.model import Measurement, Phase, ProviderKind, VersionStats
from tests.builders import body, event, harness, ingest

MIN_REQUESTS = 50
INTERVAL = 60
CASES = [  # (requests/s to the site, canary weight %)
    (1.0, 10),
    (5.0, 10),
    (20.0, 10),
    (5.0, 50),
    (50.0, 5),
    (100.0, 25),
]


@dataclass
class Traffic:
    """What a bad canary's traffic produces over any window, from the moment its weight applies."""

    rate: float
    weight: float
    since: datetime | None = None

    def measure(self, release: Any, slots: Any, providers: Any, window_start: datetime, now: datetime) -> tuple:
        start = max(window_start, self.since) if self.since else now
        seconds = max(0.0, (now - start).total_seconds())
        canary = int(self.rate * self.weight / 100 * seconds)
        stable = int(self.rate * (100 - self.weight) / 100 * seconds)
        return (
            Measurement(
                ProviderKind.HTTP,
                canary=VersionStats(requests=canary, errors=canary // 5, latency_ms=40.0),
                stable=VersionStats(requests=stable, errors=stable // 200, latency_ms=40.0),
            ),
        )

    def ask_gates(self, *args: Any) -> tuple:
        return ()


def detect(rate: float, weight: int) -> tuple[float, float]:
    h = harness()
    traffic = Traffic(rate, weight)
    h.service.analyzer = traffic
    h.analyzer = traffic  # type: ignore[assignment]
    applied: list[tuple[datetime, float]] = []
    set_weight = h.platform.set_weight

    def recording(target: Any, w: float) -> None:
        set_weight(target, w)
        applied.append((h.clock.now(), w))
        if w > 0 and traffic.since is None:
            traffic.since = h.clock.now()  # the first bad request

    h.platform.set_weight = recording  # type: ignore[method-assign]
    doc = event(
        releaseId=f"bad-{rate}-{weight}",
        strategy={"type": "canary", "steps": [{"weight": weight, "bake": "1h"}]},
        analysis={"minRequests": MIN_REQUESTS, "interval": INTERVAL, "maxErrorRate": 0.05},
    )
    release_id = ingest(h.service, body(doc), message_id=None, source="bench").release.id
    for _ in range(1000):
        release = h.service.get(release_id)
        if release.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK) and any(w == 0 for _, w in applied[1:]):
            break
        due = h.store.due_ref(release)
        assert due is not None, release.phase
        h.clock.advance(max(0.0, (due.due_at - h.clock.now()).total_seconds()))
        h.service.work(due)
    assert traffic.since is not None
    stopped = next(at for at, w in applied if w == 0 and at >= traffic.since)
    return (stopped - traffic.since).total_seconds(), MIN_REQUESTS / (rate * weight / 100)


def main() -> None:
    print(f"  minRequests {MIN_REQUESTS}, analysis.interval {INTERVAL} s, canary failing 20 % of requests")
    print("  rate/s  weight   minimum   detected   target (1.5×min + interval)   detected/target")
    for rate, weight in CASES:
        detected, minimum = detect(rate, weight)
        target = 1.5 * minimum + INTERVAL
        print(
            f"  {rate:6.1f}  {weight:5d}%  {minimum:7.1f} s  {detected:7.1f} s  {target:9.1f} s"
            f"                      {detected / target:5.2f}"
        )


if __name__ == "__main__":
    main()
