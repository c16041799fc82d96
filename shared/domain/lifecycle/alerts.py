"""Alerts and notifications are recorded with the state (an outbox) and removed once delivered: at
least once. A sink that keeps failing is retried with backoff, then given up on, in the audit."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.domain.lifecycle.draft import Draft
from shared.domain.model import Alert, Decision, Release

# What a notification may be about. The domain raises paused (inconclusive analysis), rolledBack,
# failed and warning itself; the others are announced from the audit when a sink wants them.
EVENTS = (
    "started",
    "stepAdvanced",
    "paused",
    "awaitingApproval",
    "rolledBack",
    "succeeded",
    "failed",
    "warning",
    "advisory",
)
ANNOUNCED = {
    "deploy.started": "started",
    "step.started": "stepAdvanced",
    "override.pause": "paused",
    "approval.waiting": "awaitingApproval",
    "succeeded": "succeeded",
}
# Seconds before each retry of a notification a sink refused; after the last, it is given up.
RETRY_BACKOFF_SECONDS = (10, 30, 120, 600)
MAX_ATTEMPTS = len(RETRY_BACKOFF_SECONDS) + 1


@dataclass(frozen=True)
class Delivery:
    """What became of one alert this time: the sinks that now have it, and those that refused."""

    delivered: tuple[str, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()  # (sink, why), never a URL
    # The controller's own alert channel failed: retried until it takes the alert, never given up
    # (alert rules page people from it; a rollback's or a failure's alert is delivered at least once).
    retry_forever: bool = False


def announce(decision: Decision, wanted: Collection[str]) -> Decision:
    """``decision`` with a notification for each of its audit entries a sink wants (none: as is)."""
    if not wanted:
        return decision
    events = [(ANNOUNCED[e.action], e) for e in decision.audit if ANNOUNCED.get(e.action) in wanted]
    if not events:
        return decision
    d = Draft(decision.release, decision.release.updated_at or events[0][1].at)
    for event, entry in events:
        d.now = entry.at
        d.alert("info", entry.message, event=event, action=entry.action, weight=entry.weight)
    return replace(decision, release=d.release)


def due_alerts(release: Release, now: datetime) -> list[Alert]:
    return [a for a in release.outbox if a.retry_at is None or a.retry_at <= now]


def alerts_delivered(release: Release, outcomes: Mapping[int, Delivery], now: datetime) -> Decision | None:
    """The release after a delivery round: alerts every sink has are removed (warnings and errors
    noted in the audit), the rest wait for their retry, or are given up after MAX_ATTEMPTS with the
    sinks and reasons in the audit. None when nothing changed."""
    d = Draft(release, now)
    kept: list[Alert] = []
    changed = False
    for a in release.outbox:
        outcome = outcomes.get(a.seq)
        if outcome is None:
            kept.append(a)
            continue
        changed = True
        delivered = tuple(sorted({*a.delivered, *outcome.delivered}))
        if not outcome.failures:
            if a.severity != "info":
                d.record("alert.sent", f"{a.severity} alert delivered: {a.message}", seq=a.seq)
            continue
        attempts = a.attempts + 1
        failed = ", ".join(f"{sink} ({why})" for sink, why in outcome.failures)
        if attempts >= MAX_ATTEMPTS and not outcome.retry_forever:
            d.record(
                "notification.failed",
                f"gave up on the {a.event} notification after {attempts} attempts: {failed}",
                seq=a.seq,
                event=a.event,
                sinks=[sink for sink, _ in outcome.failures],
                delivered=list(delivered),
            )
            continue
        retry_at = now + timedelta(seconds=RETRY_BACKOFF_SECONDS[min(attempts, len(RETRY_BACKOFF_SECONDS)) - 1])
        kept.append(replace(a, delivered=delivered, attempts=attempts, retry_at=retry_at))
    if not changed:
        return None
    d.update(outbox=tuple(kept))
    return d.finish()


def alerts_sent(release: Release, seqs: Collection[int], now: datetime) -> Decision | None:
    """The release with the alerts ``seqs`` delivered everywhere; None when none is still pending."""
    return alerts_delivered(release, {seq: Delivery() for seq in seqs}, now)


def with_alert(release: Release, severity: str, message: str, now: datetime) -> Release:
    """``release`` with one more alert in its outbox."""
    d = Draft(release, now)
    d.alert(severity, message)
    return d.release
