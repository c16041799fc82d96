"""When a release next needs attention."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.lifecycle.draft import Draft
from shared.domain.model import Phase

# How often a failed release that holds its site looks at the slots again.
FAILED_WATCH_SECONDS = 120


def schedule(d: Draft) -> None:
    r = d.release
    if r.phase is Phase.FAILED and r.holds_site:
        d.update(next_check_at=d.now + timedelta(seconds=FAILED_WATCH_SECONDS))
    elif r.is_final:
        d.update(next_check_at=None)
    elif r.phase is Phase.AWAITING_APPROVAL and r.weight == 0:
        d.update(next_check_at=None)  # only an approval or an override wakes it
    else:
        d.update(next_check_at=d.now)
