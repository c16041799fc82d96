"""Scale-out: 1, 2, 4 and 8 worker processes draining the work queue against one Azurite (tables and
queue) and the App Service emulator, with every ARM request taking 100-300 ms as in Azure.

Each worker process is the controller as a Functions instance builds it, fed by the queue trigger
(4 messages at once, the host's batch). The releases wait for an approval (each reconcile reads
the slots over ARM, then saves its next due time), so every run has the same work: all releases
are made due at once, one message each is put on the queue, and the run ends when the queue is
drained. The baseline is one worker. After each run the invariants are checked: every release was
acted on exactly once, none is left due, none changed phase.

    python -m benchmarks scale_out
    SCALE_RELEASES=96 python -m benchmarks scale_out
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devstack.appservice import AppServiceEmulator, Timings
from devstack.azurite import start_azurite
from shared.adapters.table_store import TableReleaseStore
from shared.adapters.work_queue import StorageWorkQueue
from shared.domain.model import Phase
from tests.builders import SUBSCRIPTION, body, ingest
from tests.e2e.conftest import RG, build_e2e, canary_event, emulator_config, sites_named
from tests.e2e.fanout_worker import FileClock, LoggedStore, spawn, stop

ROOT = Path(__file__).resolve().parent.parent
RELEASES = int(os.environ.get("SCALE_RELEASES", "96"))
WORKER_COUNTS = (1, 2, 4, 8)
ARM_LATENCY = (0.1, 0.3)
QUEUE = "release-work"
# Per reconcile: one read and one transaction on tables; receive and delete on the queue (the
# host's receive takes up to a batch, so this is an upper bound).
STORAGE_REQUESTS = 4


def waiting_release(site: str) -> dict:
    doc = canary_event(release_id=f"{site}-2.0.0", version="2.0.0", approveBeforeTraffic=True)
    doc["target"] = {"subscriptionId": SUBSCRIPTION, "resourceGroup": RG, "site": site, "slot": "staging"}
    doc["validation"] = {"checks": [{"path": "/healthz", "expectStatus": 200}], "consecutiveSuccesses": 1}
    return doc


def azurite_ceiling(store: TableReleaseStore, reads: int = 800) -> float:
    """Table requests/s Azurite answers from 16 threads: how far the runs are from saturating it."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda n: store.load_site(f"nope-{n}"), range(reads)))
    return reads / (time.perf_counter() - start)


def main() -> None:
    tables = start_azurite()
    queues = start_azurite(service="queue")
    work_dir = Path(tempfile.mkdtemp(prefix="scale-out-"))
    try:
        clock = FileClock(work_dir / "clock")
        clock.set(datetime(2026, 11, 26, 3, 0, tzinfo=UTC))
        names = [f"contoso-scale-{i:03d}" for i in range(RELEASES)]
        sites = sites_named(names)
        logs = work_dir / "logs"
        logs.mkdir()
        queue = StorageWorkQueue.from_connection_string(queues.connection_string, QUEUE)
        queue.ensure()
        config = emulator_config(clock, sites=sites)
        config.timings = Timings.fast()
        with AppServiceEmulator(config) as emulator:
            store = TableReleaseStore.from_connection_string(tables.connection_string, prefix="scale")
            setup = build_e2e(emulator, LoggedStore(store, logs / "setup.jsonl", "setup"), clock).service
            ids = [ingest(setup, body(waiting_release(n)), message_id=None, source="ci").release.id for n in names]
            for _ in range(40):
                if all(setup.get(i).phase is Phase.AWAITING_APPROVAL for i in ids):
                    break
                clock.advance(15)
                setup.reconcile_due(budget_seconds=600, concurrency=8)
            assert all(setup.get(i).phase is Phase.AWAITING_APPROVAL for i in ids), "setup did not finish"
            emulator.cloud.timings = replace(emulator.cloud.timings, arm_latency_seconds=ARM_LATENCY)
            config_path = work_dir / "config.json"
            config_path.write_text(
                json.dumps(
                    {
                        "tables": tables.connection_string,
                        "prefix": "scale",
                        "queue": queues.connection_string,
                        "queue_name": QUEUE,
                        "arm": emulator.arm_url,
                        "ca": emulator.ca_file,
                        "clock": str(work_dir / "clock"),
                        "logs": str(logs),
                        "batch": 4,
                    }
                )
            )
            print(f"  {RELEASES} releases waiting for approval; ARM requests take {ARM_LATENCY[0]}-{ARM_LATENCY[1]} s")
            ceiling = azurite_ceiling(store)
            print(f"  Azurite's own ceiling, point reads from 16 threads: {ceiling:.0f} requests/s")
            baseline = None
            for count in WORKER_COUNTS:
                workers = spawn(config_path, [f"run{count}-w{n}" for n in range(count)], logs)
                try:
                    now = clock.advance(2 * 3600)  # every release due again
                    refs = store.list_due(now)
                    assert len(refs) == RELEASES, len(refs)
                    arm_before = len(emulator.cloud.arm_requests)
                    started = time.perf_counter()
                    for ref in refs:
                        queue.send(ref)
                    while queue.client.get_queue_properties().approximate_message_count:
                        time.sleep(0.02)
                    elapsed = time.perf_counter() - started
                    arm_calls = len(emulator.cloud.arm_requests) - arm_before
                finally:
                    stop(workers)
                # The invariants: each release acted on once, nothing left due, nothing moved phase.
                moves = Counter()
                for path in logs.glob(f"run{count}-w*.jsonl"):
                    for line in path.read_text().splitlines():
                        moves[json.loads(line)["release"]] += 1
                assert moves == dict.fromkeys(ids, 1), f"acted on more or less than once: {moves}"
                assert store.list_due(now) == [], "a release was left due"
                later = now + timedelta(hours=1)
                for i in ids:
                    release = store.load_release(i).value
                    assert release.phase is Phase.AWAITING_APPROVAL, i
                    assert release.next_check_at == later, i
                rate = RELEASES / elapsed
                baseline = baseline or rate
                print(
                    f"  {count} worker(s): {elapsed:5.2f} s, {rate:6.1f} reconciles/s, "
                    f"{rate / baseline:4.2f}x one worker ({rate / baseline / count:4.0%} of linear), "
                    f"{arm_calls / RELEASES:.1f} ARM requests each, {rate * STORAGE_REQUESTS:.0f} storage requests/s"
                )
    finally:
        tables.stop()
        queues.stop()
        for path in sorted(work_dir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        work_dir.rmdir()


if __name__ == "__main__":
    main()
