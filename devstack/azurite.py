"""Start and stop the Azurite table emulator (npm package pinned in devstack/package.json)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEVSTACK = Path(__file__).resolve().parent
AZURITE_TABLE = DEVSTACK / "node_modules" / ".bin" / "azurite-table"
# The well-known development account of every storage emulator; not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Azurite:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_azurite(timeout: float = 30.0) -> Azurite:
    """Azurite's table service on a free 127.0.0.1 port, in memory. Raises when it is not installed."""
    if not AZURITE_TABLE.exists():
        raise RuntimeError(
            f"Azurite is not installed at {AZURITE_TABLE.relative_to(DEVSTACK.parent)}: "
            "run `npm ci --prefix devstack` (make test does it for you)"
        )
    last_error = ""
    for _ in range(3):
        port = free_port()
        log_path = Path(tempfile.mkstemp(prefix="azurite-", suffix=".log")[1])
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    str(AZURITE_TABLE),
                    "--tableHost",
                    "127.0.0.1",
                    "--tablePort",
                    str(port),
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NODE_NO_WARNINGS": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return Azurite(process, port, log_path)
            except OSError:
                time.sleep(0.05)
        last_error = log_path.read_text(errors="replace")[-2000:]
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    raise RuntimeError(f"Azurite did not start: {last_error}")
