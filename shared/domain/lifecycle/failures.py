"""What platform failures do to a release, and the outcome of starting a claimed swap.

Transient failures keep the state and are retried with backoff (a rollback never waits), but the
deadlines still run: a platform that keeps failing past a phase's deadline, or past the progress
deadline in any phase, takes the release down its rollback path (and a rollback into ``failed``,
with an alert). Terminal failures take the rollback path at once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shared.domain.durations import format_duration
from shared.domain.lifecycle.draft import Draft
from shared.domain.lifecycle.schedule import FAILED_WATCH_SECONDS, schedule
from shared.domain.model import Decision, Phase, Release

MAX_BACKOFF_SECONDS = 300
ROLLBACK_RETRY_SECONDS = 5
ROLLBACK_ALERT_AFTER_ATTEMPTS = 3
START_ALERT_AFTER_ATTEMPTS = 5


def phase_deadline(release: Release) -> tuple[int, str] | None:
    """How long the phase may take in all, and what it is waiting for; None for phases whose length
    the plan sets (bakes, the guard window, a person's approval)."""
    spec = release.spec
    progress = spec.analysis.progress_deadline_seconds
    return {
        Phase.DEPLOYING: (progress, "the deployment did not complete"),
        Phase.VALIDATING: (spec.validation.deadline_seconds, "validation did not pass"),
        Phase.PROMOTING: (progress, "the promotion did not complete"),
        Phase.ROLLING_BACK: (progress, "the rollback did not complete"),
    }.get(release.phase)


def transient_failure(release: Release, message: str, now: datetime, *, retry_after: float | None = None) -> Decision:
    """The platform failed in a way that may pass: keep the state, count, retry later (no sooner
    than the platform asked, with ``retry_after``)."""
    d = Draft(release, now)
    if release.is_final:  # a failed release watching its site: try again at the next look
        d.update(next_check_at=now + timedelta(seconds=FAILED_WATCH_SECONDS))
        return d.finish()
    attempt = release.transient_failures + 1
    since = release.failing_since or now
    rolling_back = release.phase is Phase.ROLLING_BACK
    # A rollback is retried soon, but never at once: a due time of now would spin a worker.
    delay = ROLLBACK_RETRY_SECONDS if rolling_back else min(15 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    if retry_after:
        delay = max(delay, int(min(retry_after, MAX_BACKOFF_SECONDS)))
    d.update(transient_failures=attempt, failing_since=since)
    d.record(
        "transient.failure",
        f"transient failure (attempt {attempt}): {message}; state unchanged, retrying"
        + (f" in {format_duration(delay)}" if delay else " on the next tick"),
        attempt=attempt,
    )
    overdue = None
    limit = release.spec.analysis.progress_deadline_seconds
    if now - since >= timedelta(seconds=limit):
        overdue = f"the platform kept failing for {format_duration(int((now - since).total_seconds()))}"
    deadline = phase_deadline(release)
    if overdue is None and deadline is not None and d.stalled(deadline[0]):
        overdue = f"{deadline[1]} within {format_duration(deadline[0])}"
    if release.phase is Phase.PENDING:
        # Nothing on the site is this release's yet: keep trying, and say so once.
        if attempt == START_ALERT_AFTER_ATTEMPTS:
            d.alert("warning", f"release {release.id} cannot start: the platform keeps failing: {message}")
    elif overdue is not None:
        if rolling_back:
            d.fail(f"{overdue} ({message}); the new version may still get traffic: check the site")
        else:
            d.rollback(f"{overdue} ({message})")
    elif rolling_back and attempt == ROLLBACK_ALERT_AFTER_ATTEMPTS:
        d.alert("warning", f"release {release.id}: the rollback is held up by the platform: {message}")
    schedule(d)
    if not d.release.is_final and d.release.phase is release.phase:
        d.update(next_check_at=now + timedelta(seconds=delay))
    return d.finish()


def terminal_failure(release: Release, message: str, now: datetime) -> Decision:
    """The platform refused in a way retrying cannot fix: take the rollback path (or fail it)."""
    d = Draft(release, now)
    if release.is_final:
        return d.finish()
    if release.phase is Phase.ROLLING_BACK:
        d.fail(f"rollback could not complete: {message}")
    elif release.phase is Phase.PENDING:
        # Nothing was changed on the site yet; a person must still fix what stopped it.
        d.transition(Phase.CANCELLED, "cancelled", f"cancelled before it started: {message}", reason=message)
        d.alert("error", f"release {release.id} could not start: {message}")
    else:
        d.rollback(message)
    schedule(d)
    return d.finish()


def _claim_is(release: Release, claimed_at: datetime) -> bool:
    return release.swap is not None and release.swap.claimed_at == claimed_at and release.swap.token is None


def swap_withdrawn(release: Release, claimed_at: datetime, now: datetime) -> Decision | None:
    """Right before starting a claimed swap: a promotion swap is not started for a release that is
    no longer promoting (a person rolled it back meanwhile). None when the swap should start."""
    if not _claim_is(release, claimed_at):
        return None
    assert release.swap is not None
    if release.swap.purpose != "promote" or release.phase is Phase.PROMOTING:
        return None
    d = Draft(release, now)
    d.update(swap=None)
    d.record("swap.withdrawn", f"the swap into production was not started: the release is {release.phase} now")
    schedule(d)
    return d.finish()


def swap_started(release: Release, claimed_at: datetime, token: str, now: datetime) -> Decision | None:
    """Record the continuation token of the swap this release claimed; None when the claim is no
    longer the release's (nothing to record)."""
    if not _claim_is(release, claimed_at):
        return None
    assert release.swap is not None
    d = Draft(release, now)
    d.update(swap=replace(release.swap, token=token), transient_failures=0, failing_since=None)
    d.record("swap.started", f"the platform accepted the swap ({release.swap.purpose}); following it")
    return d.finish()


def swap_not_started(
    release: Release, claimed_at: datetime, message: str, now: datetime, *, terminal: bool
) -> Decision | None:
    """The platform answered the swap request with an error: no swap is running, drop the claim."""
    if not _claim_is(release, claimed_at):
        return None
    released = replace(release, swap=None)
    return terminal_failure(released, message, now) if terminal else transient_failure(released, message, now)


def swap_start_unknown(release: Release, claimed_at: datetime, message: str, now: datetime) -> Decision | None:
    """The swap request got no answer: it may have started. The claim stays; what the slots show
    (or, after a while, that they show nothing) settles it."""
    if not _claim_is(release, claimed_at):
        return None
    return transient_failure(release, f"{message}; the swap may have started, waiting to see", now)
