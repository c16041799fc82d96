"""Following a release to its end: the outcome as an exit code, or the reason it was refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from releasectl.client import Api, CommandError
from releasectl.outcomes import Exit, exit_for, is_final, waits_for_a_person

# Between two looks, and the time it is (a test moves the controller's clock and this one instead).
pause = time.sleep
monotonic = time.monotonic


def find_rejection(api: Api, release_id: str) -> dict[str, Any] | None:
    """The refusal of the event published as ``release_id`` (today's or yesterday's, UTC)."""
    today = datetime.now(UTC).date()
    for day in (today, today - timedelta(days=1)):
        try:
            page = api.rejections(day=day.isoformat(), limit=200)
        except CommandError as exc:
            if exc.code is Exit.REJECTED:  # not a reader: the refusal cannot be looked up
                return None
            raise
        for item in page.get("items") or []:
            if item.get("messageId") == release_id:
                return dict(item)
    return None


def follow(
    api: Api,
    release_id: str,
    *,
    timeout: float,
    interval: float = 5.0,
    published: bool = False,
    show: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Exit, dict[str, Any] | None]:
    """Poll the release until it ends or ``timeout`` runs out. ``published``: the event was just sent
    over Service Bus, so the release may not exist yet, and a refusal is looked for while it does not."""
    deadline = monotonic() + timeout
    view: dict[str, Any] | None = None
    while True:
        view = api.release(release_id, missing_ok=True)
        if view is None:
            if published:
                refused = find_rejection(api, release_id)
                if refused is not None:
                    raise CommandError(Exit.REJECTED, f"the controller refused {release_id}: {refused.get('reason')}")
        else:
            if show is not None:
                show(view)
            if is_final(view):
                return exit_for(view), view
        remaining = deadline - monotonic()
        if remaining <= 0:
            if view is None:
                raise CommandError(
                    Exit.TIMED_OUT,
                    f"release {release_id} did not appear within {timeout:g}s (is the controller running?)",
                )
            return (Exit.WAITING_FOR_A_PERSON if waits_for_a_person(view) else Exit.TIMED_OUT), view
        pause(min(interval, remaining))
