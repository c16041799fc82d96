"""Timer tick throughput on Azurite: releases reconciled per second, against raw Table point reads.

A reconcile of one release is a handful of storage round trips (read release, read site, commit
the transition with its audit rows). The baseline is the same Azurite's point-read rate measured
in this run, so the ratio says how many point reads one reconcile costs, whatever the machine.
"""

from __future__ import annotations

import time

from devstack.azurite import start_azurite
from shared.adapters.table_store import TableReleaseStore
from tests.builders import body, event, harness, ingest

RELEASES = 40


def main() -> None:
    azurite = start_azurite()
    try:
        store = TableReleaseStore.from_connection_string(azurite.connection_string, prefix="bench")
        h = harness(store=store)
        for i in range(RELEASES):
            doc = event(releaseId=f"bench-{i}", target={**event()["target"], "site": f"site-{i}"})
            ingest(h.service, body(doc), message_id=None, source="bench")
        reads = 400
        start = time.perf_counter()
        for i in range(reads):
            store.load_site(f"nope-{i}")
        point_rate = reads / (time.perf_counter() - start)

        for concurrency in (1, 4):
            ticks = 5
            start = time.perf_counter()
            reconciled = 0
            for _ in range(ticks):
                h.clock.advance(60)
                report = h.service.reconcile_due(budget_seconds=600, concurrency=concurrency)
                reconciled += len(report.reconciled)
                assert not report.errors, report.errors
            rate = reconciled / (time.perf_counter() - start)
            print(
                f"  concurrency {concurrency}: {rate:6.1f} releases/s; point reads {point_rate:6.1f}/s; "
                f"one reconcile = {point_rate / rate:4.1f} point reads"
            )
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
