"""Start and stop Azurite's table and queue services (npm package pinned in devstack/package.json)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEVSTACK = Path(__file__).resolve().parent
AZURITE_TABLE = DEVSTACK / "node_modules" / ".bin" / "azurite-table"
AZURITE_QUEUE = DEVSTACK / "node_modules" / ".bin" / "azurite-queue"
# The well-known development account of every storage emulator; not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Azurite:
    """A running Azurite service (``table``, or ``queue``). With a ``location`` its data lives on
    disk and survives ``restart()``; without, it is in memory and a restart loses everything (as a
    reset would)."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    location: Path | None = None
    service: str = "table"

    @property
    def connection_string(self) -> str:
        endpoint = "QueueEndpoint" if self.service == "queue" else "TableEndpoint"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"{endpoint}=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def stop(self, *, keep_log: bool = False) -> None:
        """Stop it by PID, gracefully: Azurite writes its data out on SIGINT (not on SIGTERM)."""
        for stop in (lambda: self.process.send_signal(signal.SIGINT), self.process.terminate, self.process.kill):
            if self.process.poll() is not None:
                break
            stop()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
        if not keep_log:
            self.log_path.unlink(missing_ok=True)

    def ensure_running(self) -> bool:
        """Start it again (same port, same data) if it has stopped; True when it had to."""
        if self.process.poll() is None:
            return False
        self.restart()
        return True

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port (and the same data folder, if any)."""
        self.stop(keep_log=True)
        self.log_path.unlink(missing_ok=True)
        self.process, self.log_path = _launch(self.port, self.location, self.service)
        if not _wait_ready(self.process, self.port, timeout):
            raise RuntimeError(f"Azurite did not restart: {self.log_path.read_text(errors='replace')[-2000:]}")


def _launch(port: int, location: Path | None, service: str = "table") -> tuple[subprocess.Popen[bytes], Path]:
    log_path = Path(tempfile.mkstemp(prefix="azurite-", suffix=".log")[1])
    storage = ["--location", str(location)] if location is not None else ["--inMemoryPersistence"]
    binary = AZURITE_QUEUE if service == "queue" else AZURITE_TABLE
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                f"--{service}Host",
                "127.0.0.1",
                f"--{service}Port",
                str(port),
                *storage,
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
            # Its own session: a Ctrl-C in the terminal reaches the owner, which stops it by PID.
            start_new_session=True,
        )
    return process, log_path


def _wait_ready(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_azurite(timeout: float = 30.0, *, location: Path | None = None, service: str = "table") -> Azurite:
    """Azurite's table (or queue) service on a free 127.0.0.1 port: in memory, or on disk in
    ``location``. Raises when it is not installed."""
    binary = AZURITE_QUEUE if service == "queue" else AZURITE_TABLE
    if not binary.exists():
        raise RuntimeError(
            f"Azurite is not installed at {binary.relative_to(DEVSTACK.parent)}: "
            "run `npm ci --prefix devstack` (make test does it for you)"
        )
    if location is not None:
        location.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(3):
        port = free_port()
        process, log_path = _launch(port, location, service)
        if _wait_ready(process, port, timeout):
            return Azurite(process, port, log_path, location, service)
        last_error = log_path.read_text(errors="replace")[-2000:]
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log_path.unlink(missing_ok=True)
    raise RuntimeError(f"Azurite did not start: {last_error}")
