"""A clock a test moves, and a notifier and a work queue that keep what they were given."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from shared.domain.model import (
    Release,
)
from shared.ports import (
    DueRef,
)


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def notify(self, release: Release, severity: str, message: str) -> None:
        self.sent.append((release.id, severity, message))


class FakeClock:
    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class RecordingWorkQueue:
    """A work queue that keeps what was sent (release id, due time, delay), for the service's tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[DueRef, float]] = []
        self.failures = 0
        self._lock = threading.Lock()

    def send(self, ref: DueRef, *, delay_seconds: float = 0.0) -> None:
        with self._lock:
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("the queue service did not answer")
            self.sent.append((ref, delay_seconds))

    def take(self) -> list[tuple[DueRef, float]]:
        with self._lock:
            sent, self.sent = self.sent, []
            return sent
