"""When a release next needs attention.

Every unsettled release carries the time it is next due (``next_check_at``); the store keeps it
where the timer finds due releases without reading the others. A release is due at the earliest
of the moments something can change for it: the end of its bake or guard window, its next
analysis (``analysis.interval``), the next poll of a platform operation under way (a deploy, the
validation checks, a swap), a backoff after a transient failure (set in ``failures``), or a slow
watch when only a person or another release can move it (a queued release, an approval, a failed
release holding its site). Deadlines are checked on each of these wakes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.lifecycle.draft import Draft
from shared.domain.model import Phase, Release

# How often a failed release that holds its site looks at the slots again.
FAILED_WATCH_SECONDS = 120
# A platform operation under way (deploy and readiness, validation checks, a swap, a rollback,
# a webhook gate): how soon it is looked at again (sooner if the release's analysis interval is).
POLL_SECONDS = 15
# A step's weight was just applied: the next look verifies it reaches the slot, and only from then
# is the step baked and measured, so it comes soon.
VERIFY_SECONDS = 5
# A queued release is started by the release before it the moment the site changes hands; this
# slow watch only covers a worker that stopped between that commit and the start.
QUEUED_WATCH_SECONDS = 300
# Waiting for an approval (no traffic on the new version): an approval or an override wakes it at
# once; the watch only re-checks the slots for drift.
APPROVAL_WATCH_SECONDS = 3600
# A release whose alerts were not all delivered is woken to try again this soon.
ALERT_RETRY_SECONDS = 60
# Held by the deployment schedule: woken when it opens, and at least this often (the global stop
# has no end, and a policy may change).
HOLD_WATCH_SECONDS = 60


def _bake_ends(r: Release) -> list[datetime]:
    ends: list[datetime] = []
    if r.phase is Phase.SHIFTING and r.step_started_at is not None and 0 <= r.step < len(r.steps):
        ends.append(r.step_started_at + timedelta(seconds=r.steps[r.step].bake_seconds))
    if r.phase is Phase.GUARDING and r.phase_since is not None:
        ends.append(r.phase_since + timedelta(seconds=r.spec.strategy.guard_seconds))
    if r.analysis.extension_until is not None:
        ends.append(r.analysis.extension_until)
    return ends


def poll_seconds(r: Release) -> int:
    return min(POLL_SECONDS, r.spec.analysis.interval_seconds)


def next_due(r: Release, now: datetime) -> datetime | None:
    """When ``r``, just decided at ``now``, next needs attention (None: never again by itself)."""
    poll = timedelta(seconds=poll_seconds(r))
    if r.phase is Phase.FAILED and r.holds_site:
        return now + timedelta(seconds=FAILED_WATCH_SECONDS)
    if r.is_final:
        return None
    if r.gate_pending is not None:
        return now + poll
    if r.held is not None:
        watch = now + timedelta(seconds=HOLD_WATCH_SECONDS)
        return min(watch, r.held_until) if r.held_until and r.held_until > now else watch
    if r.phase is Phase.PENDING:
        return now + timedelta(seconds=QUEUED_WATCH_SECONDS)
    if r.phase is Phase.AWAITING_APPROVAL and r.weight == 0:
        return now + timedelta(seconds=APPROVAL_WATCH_SECONDS)
    measuring = r.phase is Phase.GUARDING or (
        r.phase in (Phase.SHIFTING, Phase.AWAITING_APPROVAL) and r.step_started_at is not None
    )
    if r.phase is Phase.SHIFTING and r.step_started_at is None:
        return now + min(poll, timedelta(seconds=VERIFY_SECONDS))
    if not measuring:
        return now + poll
    interval = timedelta(seconds=r.spec.analysis.interval_seconds)
    if r.phase is Phase.SHIFTING and r.step_started_at == now:
        # Just verified: a first look soon catches a canary that fails at once under heavy
        # traffic; after it, every interval.
        interval = min(interval, timedelta(seconds=VERIFY_SECONDS))
    due = now + interval
    for end in _bake_ends(r):
        if now < end < due:
            due = end
    return due


def schedule(d: Draft) -> None:
    d.update(next_check_at=next_due(d.release, d.now))


def attention_at(r: Release) -> datetime | None:
    """When the timer must find ``r``: its next check, sooner while alerts wait to be delivered;
    None once it is settled (nothing will ever happen to it again)."""
    if r.settled:
        return None
    due = r.next_check_at
    if r.outbox:
        soonest = (r.updated_at or r.created_at) + timedelta(seconds=ALERT_RETRY_SECONDS)
        retry = min(a.retry_at or soonest for a in r.outbox)
        due = retry if due is None else min(due, retry)
    if due is None:
        # Unsettled but never due by itself (a final release that no longer holds its site and
        # whose alerts are all sent is settled; this is a release an override left waiting).
        due = (r.updated_at or r.created_at) + timedelta(seconds=APPROVAL_WATCH_SECONDS)
    return due
