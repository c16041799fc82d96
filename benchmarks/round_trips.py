"""Storage round trips on Azurite: what one ingestion and each transition of a release's life cost.

Every HTTP request the Table SDK sends is counted (no retries: ``retry_total=0``); the baseline is
the cheapest possible read, one point read. A release is ingested (its creation is counted up to
and including the transaction that inserts it; starting it at once is its first transition), then
driven the way workers drive it: at each due time, the work message its last save scheduled.
Each of those reconciles is counted on its own: a transition (a phase, a step, a bake's verdict,
a swap poll or the next analysis) must cost one read and one transaction.

    python -m benchmarks round_trips
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter
from typing import Any

from devstack.azurite import start_azurite
from shared.adapters.memory import RecordingWorkQueue
from shared.adapters.table_store import TableReleaseStore
from tests.builders import BLUE_GREEN_EVENT, body, event, harness, ingest

RELEASES = 6


class Requests:
    """Counts the requests the SDK puts on the wire; ``creation`` splits one ingestion at the
    transaction that inserts the release."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        http = request.http_request
        with self._lock:
            self.seen.append("batch" if http.url.endswith("$batch") else http.method)

    def take(self) -> list[str]:
        with self._lock:
            taken, self.seen = self.seen, []
        return taken


def main() -> None:
    azurite = start_azurite()
    try:
        counter = Requests()
        store = TableReleaseStore.from_connection_string(
            azurite.connection_string, prefix="benchtrips", retry_total=0, raw_request_hook=counter
        )
        h = harness(store=store)
        queue = RecordingWorkQueue()
        h.service.work_queue = queue
        store.load_site("warm-up")  # tables created, clients cached: not part of what is counted
        store.find_release("warm-up")
        counter.take()
        store.load_site("nope")
        point_read = len(counter.take())
        creation: list[int] = []
        start: list[int] = []
        per_reconcile: Counter[tuple[int, int]] = Counter()
        outcomes: Counter[str] = Counter()
        for i in range(RELEASES):
            base = BLUE_GREEN_EVENT if i % 2 else event()
            doc = event(base, releaseId=f"trips-{i}", target={**base["target"], "site": f"site-{i}"})
            ingest(h.service, body(doc), message_id=None, source="bench")
            requests = counter.take()
            insert = requests.index("batch") + 1
            creation.append(insert)
            start.append(len(requests) - insert)
            for _ in range(200):
                sent = queue.take()
                if not sent:
                    break
                ref, delay = sent[-1]
                h.clock.advance(max(delay, 0))
                result = h.service.work(ref)
                requests = counter.take()
                per_reconcile[(requests.count("batch"), len(requests))] += 1
                outcomes[result.outcome] += 1
        reconciles = sum(per_reconcile.values())
        print(f"  a point read (baseline): {point_read} round trip(s)")
        print(
            f"  ingestion, the release created: median {statistics.median(creation):.0f} round trips "
            f"(max {max(creation)}); started at once: median {statistics.median(start):.0f} more"
        )
        transactions = sum(t * n for (t, _), n in per_reconcile.items())
        trips = sum(r * n for (_, r), n in per_reconcile.items())
        print(f"  {reconciles} reconciles at their due times ({dict(outcomes)}):")
        for (saved, requests), count in sorted(per_reconcile.items()):
            print(f"    {count:3d} reconciles saving {saved} transition(s) in {requests} round trips")
        print(f"  in all: {trips / transactions:.2f} round trips per transition saved")
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
