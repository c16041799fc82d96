"""Simulated visitors on a production host name, for the demo and the end-to-end tests.

Fresh visitors carry no cookie (the front door routes them by the ramp-up rule); sticky visitors
keep the ``x-ms-routing-name`` cookie the front door gives them, as browsers do.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests


class Visitors:
    def __init__(
        self, url: str, ca_file: str, *, rate_per_second: float = 100.0, sticky: bool = False, workers: int = 1
    ):
        self.url = url
        self.ca_file = ca_file
        self.interval = workers / rate_per_second
        self.sticky = sticky
        self.total: Counter[str] = Counter()
        self._window: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def start(self) -> Visitors:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> Visitors:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        session = requests.Session()
        session.verify = self.ca_file
        session.trust_env = False
        while not self._stop.is_set():
            started = time.monotonic()
            if not self.sticky:
                session.cookies.clear()
            try:
                response = session.get(self.url, timeout=5)
                label = response.json()["version"] if response.status_code == 200 else f"HTTP {response.status_code}"
            except (requests.RequestException, ValueError, KeyError):
                label = "no answer"
            with self._lock:
                self.total[label] += 1
                self._window[label] += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        session.close()

    def take(self) -> Counter[str]:
        """What was seen since the last call."""
        with self._lock:
            window, self._window = self._window, Counter()
        return window

    def seen(self) -> Counter[str]:
        with self._lock:
            return Counter(self.total)


def share(counts: Counter[str]) -> str:
    total = sum(counts.values()) or 1
    return " | ".join(f"{label} {100 * n / total:3.0f}%" for label, n in sorted(counts.items())) + f"  ({total} visits)"
