"""A timer tick over 10,000 active releases on Azurite, 10 % of them due: wall time, round trips per
due and per waiting release, and transitions/s against raw Azurite doing the same round trips.

Every HTTP request the Table SDK sends is counted (``retry_total=0``). The releases are written
straight into the store (one per site, each the active release of its site), 1,000 due now and
9,000 due in an hour. The tick reconciles the due ones on the in-memory platform (no ARM latency:
this measures the controller and the store). The baseline, measured in the same run with the same
concurrency, is raw SDK calls doing what one transition does on the wire: one partition query for
the site and release rows, then one entity-group transaction of the same rows as the controller's
(release row, audit rows, due row moved, site row); the ratio is the controller's transitions/s
over the baseline's, so what it measures is the controller's own overhead.

    python -m benchmarks tick            # 10,000 releases
    TICK_RELEASES=2000 python -m benchmarks tick
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from devstack.azurite import start_azurite
from shared.adapters.table_store import TableReleaseStore, table_key
from shared.domain.lifecycle import new_release
from shared.domain.model import SiteState
from shared.domain.schema import spec_fingerprint
from shared.ports import ReleaseWrite, Versioned
from tests.builders import event, harness, spec

RELEASES = int(os.environ.get("TICK_RELEASES", "10000"))
DUE_SHARE = 0.10
CONCURRENCY = 8


class Requests:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        with self._lock:
            self.seen[request.http_request.method] += 1

    def take(self) -> int:
        with self._lock:
            taken, self.seen = sum(self.seen.values()), Counter()
        return taken


def seed(store: TableReleaseStore, now: Any, count: int, due: int) -> None:
    def write(i: int) -> None:
        s = spec(event(releaseId=f"tick-{i}", target={**event()["target"], "site": f"tick-site-{i:05d}"}))
        release = new_release(s, now - timedelta(minutes=5), actor="ci", source="bench").release
        if i >= due:
            release = replace(release, next_check_at=now + timedelta(hours=1))
        store.commit(
            release.site_key,
            [ReleaseWrite(release, None, (), spec_fingerprint(s))],
            Versioned(SiteState(release.site_key, active=release.id), None),
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(write, range(count)))


class Transactions:
    """Records the shape of each transaction the store submits: (operation, row kind) per row."""

    def __init__(self, table: Any) -> None:
        self.shapes: Counter[tuple[tuple[str, str], ...]] = Counter()
        self._submit = table.submit_transaction
        self._lock = threading.Lock()
        table.submit_transaction = self.submit

    def submit(self, operations: Any, **kwargs: Any) -> Any:
        shape = tuple((op[0], str(op[1].get("Kind") or op[1]["RowKey"].split("|")[0])) for op in operations)
        with self._lock:
            self.shapes[shape] += 1
        return self._submit(operations, **kwargs)


def raw_transitions(store: TableReleaseStore, refs: list[Any], shape: tuple[tuple[str, str], ...]) -> float:
    """Transitions/s of the same two round trips done with the SDK alone (no decide, no codec): the
    partition query for the site and release rows, then a transaction of the same rows as the
    controller's most common one (the release row replaced If-Match, its audit rows inserted, its
    due row moved, the site row replaced if it was)."""
    table = store._releases

    def one(ref: Any) -> None:
        pk = table_key(ref.site_key)
        rows = list(
            table.query_entities(
                "PartitionKey eq @pk and (RowKey eq @site or RowKey eq @row )",
                parameters={"pk": pk, "site": "site", "row": ref.row},
            )
        )
        by_key = {r["RowKey"]: r for r in rows}
        release = by_key[ref.row]
        key = table_key(ref.release_id)
        millis = int(ref.due_at.timestamp() * 1000)
        operations: list[Any] = []
        audit = 0
        for op, kind in shape:
            if kind == "release":
                entity = {**release, "DueAt": "moved"}
                match = {"etag": release.metadata["etag"], "match_condition": MatchConditions.IfNotModified}
                operations.append(("update", entity, {"mode": UpdateMode.REPLACE, **match}))
            elif kind == "site" and "site" in by_key:
                site = by_key["site"]
                match = {"etag": site.metadata["etag"], "match_condition": MatchConditions.IfNotModified}
                operations.append(("update", dict(site), {"mode": UpdateMode.REPLACE, **match}))
            elif kind == "audit":
                audit += 1
                operations.append(
                    (
                        "create",
                        {
                            "PartitionKey": pk,
                            "RowKey": f"audit|{key}|raw{audit:07d}",
                            "Kind": "audit",
                            "Message": "x" * 160,
                            "Details": "{}",
                        },
                    )
                )
            elif kind == "due" and op == "delete":
                operations.append(("delete", {"PartitionKey": pk, "RowKey": f"due|{millis:013d}|{key}"}))
            elif kind == "due":
                entity = {"PartitionKey": pk, "RowKey": f"due|{millis + 1:013d}|{key}", "Kind": "due"}
                operations.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        table.submit_transaction(operations)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        list(pool.map(one, refs))
    return len(refs) / (time.perf_counter() - start)


def main() -> None:
    azurite = start_azurite()
    try:
        counter = Requests()
        store = TableReleaseStore.from_connection_string(
            azurite.connection_string, prefix="benchtick", retry_total=0, raw_request_hook=counter
        )
        h = harness(store=store)
        due = int(RELEASES * DUE_SHARE)
        started = time.perf_counter()
        seed(store, h.clock.now(), RELEASES, due)
        print(f"  seeded {RELEASES} active releases ({due} due) in {time.perf_counter() - started:.0f} s")
        assert len(store.list_active()) == RELEASES
        store.ensure_due_index()  # a store's one-time check (a marker row once done): not the tick's cost
        counter.take()

        transactions = Transactions(store._releases)
        started = time.perf_counter()
        refs = store.list_due(h.clock.now())
        listing = counter.take()
        report = h.service.reconcile_due(budget_seconds=3600, concurrency=CONCURRENCY)
        wall = time.perf_counter() - started
        spent = counter.take()
        assert not report.errors, report.errors[:3]
        moved = [r for r in report.reconciled if r.outcome == "advanced"]
        assert len(refs) == due, len(refs)
        assert len(moved) == due, len(moved)
        listing_in_tick = listing  # the tick lists the due index once more, the same way
        per_due = (spent - listing_in_tick) / due
        per_waiting = (spent - listing_in_tick - round(per_due) * due) / (RELEASES - due)
        rate = due / wall
        still_due = store.list_due(h.clock.now())
        assert not still_due, f"{len(still_due)} releases still due after the tick"

        # The baseline: the same round trips, raw, on the releases just moved (now due in 15 s).
        h.clock.advance(15)
        baseline_refs = store.list_due(h.clock.now())
        counter.take()
        shape, _ = transactions.shapes.most_common(1)[0]
        raw_rate = raw_transitions(store, baseline_refs, shape)
        print(f"  a transition's transaction: {', '.join(f'{op} {kind}' for op, kind in shape)}")
        print(f"  listing the due index: {listing} round trip(s) for {due} due releases out of {RELEASES}")
        print(f"  the tick: {wall:.2f} s wall, {spent} round trips in all")
        print(f"    per due release (a transition): {per_due:.2f} round trips")
        print(f"    per waiting release: {per_waiting:.2f} round trips")
        print(
            f"  transitions/s: {rate:.0f}; raw Azurite, same round trips: {raw_rate:.0f}/s; "
            f"ratio {rate / raw_rate:.2f} (concurrency {CONCURRENCY})"
        )
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
