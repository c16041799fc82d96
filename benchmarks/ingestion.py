"""Ingestion: release events/s through the Service Bus handler on Azurite, against raw Azurite doing
the same round trips.

Each event is signed, verified, checked against the policy, stored (its id claimed, its site read,
the release inserted with its audit and due rows and the site row in one transaction) and started
at once (one read, one transaction: the deploy on the in-memory platform). Eight at a time, as
host.json lets eight Service Bus sessions run at once. The baseline, measured in the same run with
the same concurrency, is the SDK alone doing those five requests with rows of the same size.

    python -m benchmarks ingestion
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.functions.servicebus import ServiceBusMessage

from devstack.azurite import start_azurite
from shared import bootstrap
from shared.adapters.table_store import TableReleaseStore, table_key
from shared.authority.proofs import sign
from shared.settings import Settings
from shared.triggers.events import release_events
from tests.builders import TEST_KEY, TEST_KEY_ID, body, event, harness

EVENTS = 400
CONCURRENCY = 8


class Requests:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        with self._lock:
            self.count += 1


def message(n: int) -> ServiceBusMessage:
    raw = body(event(releaseId=f"ingest-{n}", target={**event()["target"], "site": f"ingest-site-{n:04d}"}))
    return ServiceBusMessage(
        body=raw,
        message_id=f"ingest-{n}",
        delivery_count=1,
        session_id=f"ingest-site-{n:04d}",
        application_properties={"releaseSignature": sign(raw, TEST_KEY), "releaseKeyId": TEST_KEY_ID},
        user_properties={},
    )


def raw_events(store: TableReleaseStore, template: dict[str, Any], count: int) -> float:
    """Events/s of the same five requests done with the SDK alone, rows of the same size."""
    index, releases = store._index, store._releases

    def one(n: int) -> None:
        pk = f"raw-site-{n:04d}"
        row = f"release|0000000000000|raw-{n}"
        index.create_entity({"PartitionKey": "id", "RowKey": f"raw-{n}", "SiteKey": pk})
        list(
            releases.query_entities(
                "PartitionKey eq @pk and (RowKey eq @site or RowKey eq @own )",
                parameters={"pk": pk, "site": "site", "own": row},
            )
        )
        release = {**template, "PartitionKey": pk, "RowKey": row}
        audit = {"PartitionKey": pk, "RowKey": f"audit|raw-{n}|1", "Kind": "audit", "Message": "x" * 200}
        due = {"PartitionKey": pk, "RowKey": f"due|1|raw-{n}", "Kind": "due"}
        releases.submit_transaction(
            [
                ("create", release),
                ("create", audit),
                ("upsert", due, {"mode": UpdateMode.REPLACE}),
                ("create", {"PartitionKey": pk, "RowKey": "site", "State": "{}"}),
            ]
        )
        rows = list(
            releases.query_entities(
                "PartitionKey eq @pk and (RowKey eq @site or RowKey eq @row )",
                parameters={"pk": pk, "site": "site", "row": row},
            )
        )
        current = next(r for r in rows if r["RowKey"] == row)
        match = {"etag": current.metadata["etag"], "match_condition": MatchConditions.IfNotModified}
        releases.submit_transaction(
            [
                ("update", dict(current), {"mode": UpdateMode.REPLACE, **match}),
                ("create", {**audit, "RowKey": f"audit|raw-{n}|2"}),
                ("delete", {"PartitionKey": pk, "RowKey": f"due|1|raw-{n}"}),
                ("upsert", {**due, "RowKey": f"due|2|raw-{n}"}, {"mode": UpdateMode.REPLACE}),
            ]
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - start)


def main() -> None:
    azurite = start_azurite()
    try:
        counter = Requests()
        store = TableReleaseStore.from_connection_string(
            azurite.connection_string, prefix="benchingest", retry_total=0, raw_request_hook=counter
        )
        h = harness(store=store)
        settings = Settings.from_env({"RELEASE_STORE_CONNECTION": azurite.connection_string})
        bootstrap.use(bootstrap.Container(settings=settings, service=h.service, parts={"store": store}))
        release_events(message(-1))  # tables created, clients cached
        messages = [message(n) for n in range(EVENTS)]
        counter.count = 0
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            list(pool.map(release_events, messages))
        rate = EVENTS / (time.perf_counter() - start)
        trips = counter.count / EVENTS
        created = store.list_releases(limit=1000).items
        assert len(created) == EVENTS + 1, len(created)
        first = h.service.get("ingest-0")
        template = dict(store._releases.get_entity(table_key(first.site_key), store.due_ref(first).row))
        raw_rate = raw_events(store, template, EVENTS)
        print(f"  {EVENTS} events, {CONCURRENCY} at a time, each created and started: {trips:.1f} round trips")
        print(
            f"  through the Service Bus handler: {rate:6.1f} events/s; raw Azurite, same requests: "
            f"{raw_rate:6.1f}/s; ratio {rate / raw_rate:.2f}"
        )
    finally:
        bootstrap.use(None)
        azurite.stop()


if __name__ == "__main__":
    main()
