"""Fan-out: the timer finds due releases and puts one work message per release on the queue; a
queue-triggered worker reconciles the release a message names.

A reconcile that saves a release schedules its next message itself (``base.follow_ups``): the
message becomes visible when the release is next due, so a release reacts at its due time, not at
the next tick. The timer is the safety net: a release still due ``grace`` after its due time (its
message was lost, never sent, or dead-lettered) is sent again, once per ``grace`` while it stays
due. Duplicates are harmless: a worker that finds the release not due (or already moved on) reads
it once and writes nothing; two workers on the same release are kept apart by the ETag.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.ports import DueRef, WorkQueue
from shared.service.base import ReconcileResult, ServiceBase

DEFAULT_GRACE_SECONDS = 60.0
SEND_CONCURRENCY = 16


@dataclass
class DispatchReport:
    due: int = 0
    sent: list[str] = field(default_factory=list)
    waiting_for_their_message: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def resend_now(due_at: datetime, now: datetime, *, period: float, grace: float) -> bool:
    """Whether the tick at ``now`` (ticks ``period`` seconds apart) sends a release due at
    ``due_at`` again: once ``grace`` has passed, then once in every further ``grace``."""
    late = (now - due_at).total_seconds() - grace
    if late < 0:
        return False
    return late < period or int(late // grace) != int((late - period) // grace)


class Dispatcher(ServiceBase):
    def dispatch_due(
        self,
        queue: WorkQueue,
        *,
        period_seconds: float,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        budget_seconds: float = 60.0,
        limit: int | None = None,
    ) -> DispatchReport:
        """Send a work message for every release overdue by ``grace_seconds`` (see ``resend_now``).
        Reads only due releases; sends in parallel; starts no send after the budget."""
        report = DispatchReport()
        now = self.clock.now()
        self.store.ensure_due_index()
        refs = self.store.list_due(now - timedelta(seconds=grace_seconds), limit=limit)
        report.due = len(refs)
        chosen = [r for r in refs if resend_now(r.due_at, now, period=period_seconds, grace=grace_seconds)]
        report.waiting_for_their_message = len(refs) - len(chosen)
        deadline = time.monotonic() + budget_seconds

        def send(ref: DueRef) -> str | None:
            if time.monotonic() >= deadline:
                return "budget spent"
            try:
                queue.send(ref, delay_seconds=0)
            except Exception as exc:  # reported; the next tick tries again
                return f"{type(exc).__name__}: {exc}"
            return None

        with ThreadPoolExecutor(max_workers=SEND_CONCURRENCY, thread_name_prefix="dispatch") as pool:
            for ref, error in zip(chosen, pool.map(send, chosen), strict=True):
                if error is None:
                    report.sent.append(ref.release_id)
                else:
                    report.errors.append((ref.release_id, error))
        return report

    def work(self, ref: DueRef) -> ReconcileResult:
        """A worker's message: reconcile the release it names if it is due (one read when it is
        not). Raises StoreUnavailable and TooManyConflicts, so that the message is retried (and
        dead-lettered after the queue's maxDequeueCount)."""
        return self.reconcile(ref.release_id, ref=ref)


__all__ = ["DEFAULT_GRACE_SECONDS", "DispatchReport", "Dispatcher", "resend_now"]
