"""Alerts are recorded with the state (an outbox) and removed once delivered: at least once."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from shared.domain.lifecycle.draft import Draft
from shared.domain.model import Decision, Release


def alerts_sent(release: Release, seqs: Collection[int], now: datetime) -> Decision | None:
    """The release with the alerts ``seqs`` delivered; None when none of them is still pending."""
    delivered = [a for a in release.outbox if a.seq in seqs]
    if not delivered:
        return None
    d = Draft(release, now)
    d.update(outbox=tuple(a for a in release.outbox if a.seq not in seqs))
    for a in delivered:
        d.record("alert.sent", f"{a.severity} alert delivered: {a.message}", seq=a.seq)
    return d.finish()


def with_alert(release: Release, severity: str, message: str, now: datetime) -> Release:
    """``release`` with one more alert in its outbox."""
    d = Draft(release, now)
    d.alert(severity, message)
    return d.release
