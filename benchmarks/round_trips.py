"""Storage round trips on Azurite: what one ingestion and one timer-driven transition cost, counted.

Every HTTP request the Table SDK sends is counted (no retries: ``retry_total=0``). The baseline is
the cheapest possible read, one point read, so the figures are round trips, whatever the machine.
A release goes through ingestion, then each timer tick that moves it (deploy done, validation
rounds, each step and its bake, the swap, the guard) is counted on its own.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from devstack.azurite import start_azurite
from shared.adapters.table_store import TableReleaseStore
from tests.builders import body, event, harness, ingest

RELEASES = 10


class Requests:
    """Counts the requests the SDK puts on the wire, by method."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, request: Any) -> None:
        self.seen[request.http_request.method] += 1

    def take(self) -> Counter[str]:
        taken, self.seen = self.seen, Counter()
        return taken


def main() -> None:
    azurite = start_azurite()
    try:
        counter = Requests()
        store = TableReleaseStore.from_connection_string(
            azurite.connection_string, prefix="benchtrips", retry_total=0, raw_request_hook=counter
        )
        h = harness(store=store)
        store.load_site("warm-up")  # tables created, clients cached: not part of what is counted
        counter.take()
        store.load_site("nope")
        point_read = sum(counter.take().values())
        ingestion: list[int] = []
        for i in range(RELEASES):
            doc = event(releaseId=f"trips-{i}", target={**event()["target"], "site": f"site-{i}"})
            ingest(h.service, body(doc), message_id=None, source="bench")
            ingestion.append(sum(counter.take().values()))
        per_tick: list[float] = []
        idle: list[float] = []
        for _ in range(30):
            h.clock.advance(60)
            before = {r.release_id: (r.phase, r.weight) for r in store.list_releases(limit=100).items}
            counter.take()
            report = h.service.reconcile_due(budget_seconds=600, concurrency=1)
            spent = sum(counter.take().values())
            after = {r.release_id: (r.phase, r.weight) for r in store.list_releases(limit=100).items}
            counter.take()
            moved = sum(1 for rid, state in after.items() if before.get(rid) != state)
            if report.reconciled and moved == len(report.reconciled):
                per_tick.append(spent / moved)  # every release reconciled moved on
            elif report.reconciled and not moved:
                idle.append(spent / len(report.reconciled))  # every one was waiting
        print(f"  a point read (baseline): {point_read} round trip(s)")
        print(f"  ingestion, a release created and started: median {statistics.median(ingestion):.0f} round trips")
        if per_tick:
            print(f"  a tick where every release moves: {statistics.median(per_tick):.1f} round trips per transition")
        if idle:
            print(f"  a tick where every release waits: {statistics.median(idle):.1f} round trips per release")
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
