"""Fan-out across processes: two worker processes drain the work queue (Azurite's queue service)
against one Azurite and the App Service emulator, while the timer's dispatch drops and duplicates
messages on purpose. No transition is applied twice and every due time of every release is acted
on exactly once.

The test owns the clock (a file every process reads), so Azure's minutes pass in rounds: each
round moves it 10 s, dispatches the due releases through a queue that loses 20 % of the messages
and sends 30 % twice, and waits until the workers have drained the queue.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from devstack.appservice import AppServiceEmulator
from devstack.azurite import start_azurite
from shared.adapters.table_store import TableReleaseStore
from shared.adapters.work_queue import StorageWorkQueue
from shared.domain.model import Phase
from tests.builders import SUBSCRIPTION, body, ingest
from tests.e2e.conftest import RG, build_e2e, canary_event, emulator_config, sites_named
from tests.e2e.fanout_worker import FileClock, LoggedStore, spawn, stop

SITES = [f"contoso-shop-{i}" for i in range(6)]
WORKERS = 2
ROUND_SECONDS = 10
QUEUE = "release-work"


class ChaosQueue:
    """The timer's queue, losing and duplicating messages (seeded)."""

    def __init__(self, inner: StorageWorkQueue, seed: int):
        self.inner = inner
        self.random = random.Random(seed)
        self.sent = self.dropped = self.duplicated = 0

    def send(self, ref, *, delay_seconds: float = 0.0) -> None:
        if self.random.random() < 0.2:
            self.dropped += 1
            return
        self.inner.send(ref, delay_seconds=delay_seconds)
        self.sent += 1
        if self.random.random() < 0.3:
            self.inner.send(ref, delay_seconds=delay_seconds)
            self.duplicated += 1


def release_for(site: str, index: int) -> dict:
    doc = canary_event(release_id=f"{site}-2.0.0", version="2.0.0")
    doc["target"] = {"subscriptionId": SUBSCRIPTION, "resourceGroup": RG, "site": site, "slot": "staging"}
    doc["analysis"] = {"providers": [{"type": "http", "requestsPerTick": 5}], "minRequests": 5, "interval": "10s"}
    if index % 2:
        doc["strategy"] = {"type": "blueGreen", "guard": "30s"}
    else:
        doc["strategy"] = {"type": "canary", "steps": [{"weight": 20, "bake": "30s"}, {"weight": 50, "bake": "30s"}]}
    return doc


def drained(queue: StorageWorkQueue, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue.client.get_queue_properties().approximate_message_count == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the workers did not drain the queue")


@pytest.fixture
def queue_azurite():
    server = start_azurite(service="queue")
    yield server
    server.stop()


def test_two_workers_never_apply_a_transition_twice_and_act_on_every_due_time_once(
    azurite, queue_azurite, table_prefix, tmp_path
):
    clock = FileClock(tmp_path / "clock")
    clock.set(datetime(2026, 11, 26, 3, 0, tzinfo=UTC))
    sites = sites_named(SITES)
    logs = tmp_path / "logs"
    logs.mkdir()
    work = StorageWorkQueue.from_connection_string(queue_azurite.connection_string, QUEUE)
    work.ensure()
    with AppServiceEmulator(emulator_config(clock, sites=sites)) as emulator:
        config = {
            "tables": azurite.connection_string,
            "prefix": table_prefix,
            "queue": queue_azurite.connection_string,
            "queue_name": QUEUE,
            "arm": emulator.arm_url,
            "ca": emulator.ca_file,
            "clock": str(tmp_path / "clock"),
            "logs": str(logs),
        }
        (tmp_path / "config.json").write_text(json.dumps(config))
        workers = spawn(tmp_path / "config.json", [f"w{n}" for n in range(WORKERS)], tmp_path)
        try:
            store = LoggedStore(
                TableReleaseStore.from_connection_string(azurite.connection_string, prefix=table_prefix),
                logs / "timer.jsonl",
                "timer",
            )
            timer = build_e2e(emulator, store, clock).service
            ids = []
            for index, site in enumerate(SITES):
                result = ingest(timer, body(release_for(site, index)), message_id=None, source="ci")
                assert result.outcome == "created", result.reason
                ids.append(result.release.id)
            chaos = ChaosQueue(work, seed=20261127)
            for _ in range(240):
                if all(timer.get(i).is_final for i in ids):
                    break
                clock.advance(ROUND_SECONDS)
                timer.dispatch_due(chaos, period_seconds=10**9, grace_seconds=0)
                drained(work)
                errors = "".join((tmp_path / f"w{n}.err").read_text() for n in range(WORKERS))
                assert "Traceback" not in errors and "raised on message" not in errors, errors[-3000:]
            final = {i: timer.get(i) for i in ids}
            arm = list(emulator.cloud.arm_requests)
        finally:
            stop(workers)

    assert {i: r.phase for i, r in final.items()} == dict.fromkeys(ids, Phase.SUCCEEDED)
    assert chaos.dropped > 0 and chaos.duplicated > 0, "the queue lost and duplicated messages"

    commits = [json.loads(line) for path in sorted(logs.glob("*.jsonl")) for line in path.read_text().splitlines()]
    by_worker = Counter(c["who"] for c in commits)
    assert all(by_worker[f"w{n}"] > 0 for n in range(WORKERS)), by_worker

    # Each save moves the release's due-index entry from the due time it was loaded at to the next.
    # Every due time a release was given is moved on from exactly once: acted on, never twice.
    moved = Counter((c["release"], c["from"]) for c in commits if c["from"] is not None and c["to"] != c["from"])
    twice = {key: n for key, n in moved.items() if n > 1}
    assert not twice, f"a due time was acted on twice: {twice}"
    scheduled = {(c["release"], c["to"]) for c in commits if c["to"] is not None}
    assert scheduled == set(moved), f"due times never acted on: {sorted(scheduled - set(moved))}"
    ends = {c["release"] for c in commits if c["to"] is None}
    assert ends == set(ids), "every release left the due index when it settled"

    # No platform action was applied twice: one swap per site, each canary step routed once.
    swaps = Counter(path.split("/sites/")[1].split("/")[0] for method, path in arm if path.endswith("/slotsswap"))
    assert swaps == dict.fromkeys(SITES, 1), swaps
    for release_id, release in final.items():
        actions = [a.entry.action for a in timer.audit(release_id)]
        assert [a.seq for a in timer.audit(release_id)] == list(range(1, release.audit_seq + 1))
        assert actions.count("step.started") == len(release.steps), (release_id, actions)
        assert actions.count("promotion.swapStarted") + actions.count("swap.started") <= 1, actions
