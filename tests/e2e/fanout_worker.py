"""One worker process of the fan-out test: the controller as a Functions instance builds it (Table
Storage on Azurite, the App Service adapter on the emulator), fed by the queue trigger from
Azurite's queue service, on the test's clock (a file the test moves forward).

Every commit it makes is appended to its log as one JSON line: the release, the due time it was
loaded at (the due index entry the commit moves), the due time it moves to, and the phase.

    python -m tests.e2e.fanout_worker CONFIG.json
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack.queue_trigger import QueueOptions, QueueTrigger, QueueTriggerListener
from shared.adapters.analysis import HttpProvider, ProviderAnalyzer
from shared.adapters.codec import iso
from shared.adapters.memory import RecordingNotifier
from shared.adapters.probes import HttpProber, HttpValidator
from shared.adapters.table_store import TableReleaseStore
from shared.adapters.work_queue import decode
from shared.domain.lifecycle import attention_at
from shared.domain.model import ProviderKind
from shared.service import ReleaseService


class FileClock:
    """The test's clock: an ISO time in a file, moved forward only by the test."""

    def __init__(self, path: Path):
        self.path = path

    def now(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text())

    def advance(self, seconds: float) -> datetime:
        from datetime import timedelta

        moved = self.now() + timedelta(seconds=seconds)
        self.set(moved)
        return moved

    def set(self, at: datetime) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(at.isoformat())
        os.replace(partial, self.path)


class LoggedStore:
    """The table store, logging each successful commit (one JSON line per release written)."""

    def __init__(self, inner: TableReleaseStore, log: Path, who: str):
        self.inner = inner
        self.log = log
        self.who = who
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, site_key: str, writes: list[Any], site: Any = None) -> dict[str, str]:
        etags = self.inner.commit(site_key, writes, site)
        lines = [
            json.dumps(
                {
                    "who": self.who,
                    "release": w.release.id,
                    "from": iso(w.release.indexed_due) if w.etag is not None else None,
                    "to": iso(attention_at(w.release)),
                    "phase": w.release.phase.value,
                }
            )
            for w in writes
        ]
        with self._lock, self.log.open("a") as out:
            out.write("".join(line + "\n" for line in lines))
        return etags


def build(config: dict[str, Any], log: Path, who: str) -> ReleaseService:
    from devstack.credentials import EmulatorCredential
    from shared.adapters.appservice import AppServiceSlotPlatform
    from tests.builders import authority_for_tests

    store = LoggedStore(TableReleaseStore.from_connection_string(config["tables"], prefix=config["prefix"]), log, who)
    platform = AppServiceSlotPlatform(
        EmulatorCredential(),
        arm_endpoint=config["arm"],
        ca_bundle=config["ca"],
        prober=HttpProber(config["ca"]),
        retry_total=0,
        read_timeout=5.0,
        arm_scope="https://management.azure.com/.default",
    )
    analyzer = ProviderAnalyzer({ProviderKind.HTTP: HttpProvider(HttpProber(config["ca"]))})
    return ReleaseService(
        store,  # type: ignore[arg-type]
        platform,
        HttpValidator(ca_bundle=config["ca"]),
        analyzer,
        RecordingNotifier(),
        FileClock(Path(config["clock"])),
        authority=authority_for_tests(),
    )


ROOT = Path(__file__).resolve().parents[2]


def spawn(config_path: Path, names: list[str], errors: Path) -> list[subprocess.Popen[str]]:
    """Start one worker process per name (stderr in ``errors/<name>.err``); returns once all are ready."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.fanout_worker", str(config_path), name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(errors / f"{name}.err").open("w"),
            text=True,
        )
        for name in names
    ]
    for worker in workers:
        if worker.stdout is None or worker.stdout.readline().strip() != "ready":
            stop(workers)
            raise RuntimeError(f"a worker did not start: see {errors}")
    return workers


def stop(workers: list[subprocess.Popen[str]]) -> None:
    """Stop the workers by PID: SIGTERM, then SIGKILL after 30 s."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    who = argv[1]
    service = build(config, Path(config["logs"]) / f"{who}.jsonl", who)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent = os.getppid()

    def handle(message: Any) -> None:
        service.work(decode(message.get_body()))

    listener = QueueTriggerListener(
        QueueTrigger(f"worker-{who}", config["queue_name"], "WorkQueue", handle),
        config["queue"],
        QueueOptions(
            batch_size=int(config.get("batch", 4)),
            max_dequeue_count=5,
            visibility_timeout=1.0,
            max_polling_interval=0.2,
        ),
    ).start()
    print("ready", flush=True)
    while not stop.wait(0.5):
        if os.getppid() != parent:  # the test is gone: stop by ourselves
            break
    listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
