"""The deployment schedule: a release starts and advances only while its site's windows are open,
no freeze is on and nobody pulled the global stop. Checked only before the release starts, before
each step and before the swap — never in the middle of one — and rollbacks are never held."""

from __future__ import annotations

from datetime import datetime

from shared.domain.lifecycle.draft import Draft
from shared.domain.model import Observation, Release
from shared.domain.windows import shut


def schedule_hold(release: Release, now: datetime, stop: str | None) -> tuple[str, datetime | None] | None:
    """Why ``release`` may not start or advance at ``now``, and until when; None when it may."""
    if stop:
        return f"all releases are stopped: {stop}", None
    if release.schedule_override is not None or release.policy is None:
        return None
    closed = shut(release.policy.schedule, now)
    return (closed.why, closed.until) if closed is not None else None


def held(d: Draft, obs: Observation, before: str) -> bool:
    """True (and said once in the audit) while the schedule holds the release before ``before``."""
    r = d.release
    hold = schedule_hold(r, d.now, obs.stop)
    if hold is None:
        if r.held is not None:
            d.update(held=None, held_until=None)
            d.record("schedule.open", f"the deployment schedule allows {before} now")
        return False
    why, until = hold
    if (r.held, r.held_until) != (why, until):
        d.update(held=why, held_until=until)
        when = f" until {until:%Y-%m-%d %H:%M}Z" if until else ""
        d.record("schedule.held", f"holding before {before}{when}: {why}", until=until.isoformat() if until else None)
    return True
