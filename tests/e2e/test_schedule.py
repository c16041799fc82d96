"""The deployment schedule on the emulator, on the shared clock: a release submitted outside its
window waits in pending and starts when the window opens; a freeze that begins mid-release holds it
before its next step; the global stop holds everything but rollbacks; an admin lets one through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import OverrideKind, Phase
from shared.domain.windows import parse_schedule
from tests.builders import authority_for_tests, person, policy_for_tests
from tests.e2e.conftest import build_e2e, canary_event

# The tests' clock starts on Thursday 26 November 2026 at 03:00 UTC (04:00 in Berlin).
WORKDAY = [{"days": "Mon-Thu", "from": "09:00", "to": "16:00", "timeZone": "Europe/Berlin"}]


def controller(emulator, table_store, clock, windows=(), freezes=()):
    schedule = parse_schedule(list(windows), list(freezes))
    return build_e2e(emulator, table_store, clock, authority=authority_for_tests(policy_for_tests(schedule=schedule)))


def test_a_release_outside_its_window_waits_and_starts_when_it_opens(emulator, table_store, clock):
    e2e = controller(emulator, table_store, clock, windows=WORKDAY)
    try:
        release_id = e2e.submit(canary_event(steps=(50,)))
        release = e2e.service.get(release_id)
        assert release.phase is Phase.PENDING and release.held is not None
        assert release.held_until == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
        assert "until 2026-11-26 08:00Z" in e2e.service.audit(release_id)[-1].entry.message
        e2e.tick(release_id, 3600)
        assert e2e.phase(release_id) is Phase.PENDING
        clock.advance((datetime(2026, 11, 26, 8, 0, tzinfo=UTC) - clock.now()).total_seconds())
        e2e.service.reconcile(release_id)
        assert e2e.phase(release_id) is Phase.DEPLOYING
        e2e.until(release_id, lambda r: r.is_final, seconds=60)
        assert e2e.phase(release_id) is Phase.SUCCEEDED
        actions = [a.entry.action for a in e2e.service.audit(release_id)]
        assert actions.count("schedule.held") == 1 and "schedule.open" in actions
    finally:
        e2e.http.close()


def test_a_freeze_that_begins_mid_release_holds_it_before_its_next_step(emulator, table_store, clock):
    freeze = {"from": "2026-11-26T03:20:00+00:00", "to": "2026-11-26T05:00:00+00:00", "reason": "incident review"}
    e2e = controller(emulator, table_store, clock, freezes=[freeze])
    try:
        doc = canary_event(steps=(10, 50))
        doc["strategy"]["steps"][0]["bake"] = "30m"
        release_id = e2e.submit(doc)
        e2e.until(release_id, lambda r: r.phase is Phase.SHIFTING and r.step_started_at is not None, seconds=60)
        assert clock.now() < datetime(2026, 11, 26, 3, 20, tzinfo=UTC), "step 1 starts before the freeze"
        e2e.until(release_id, lambda r: r.held is not None, seconds=60)
        release = e2e.service.get(release_id)
        assert (release.phase, release.step, release.weight) == (Phase.SHIFTING, 0, 10.0), "held at its first step"
        assert "before step 2" in e2e.service.audit(release_id)[-1].entry.message
        assert "incident review" in release.held
        with pytest.raises(OverrideRefused, match="deployment schedule holds"):
            e2e.service.override(release_id, OverrideKind.PROMOTE, actor=person("olga"), reason="push it")
        e2e.until(release_id, lambda r: r.is_final, seconds=300)
        assert e2e.phase(release_id) is Phase.SUCCEEDED
        stepped = [a.entry.at for a in e2e.service.audit(release_id) if a.entry.action == "step.started"]
        assert stepped[1] >= datetime(2026, 11, 26, 5, 0, tzinfo=UTC), "step 2 only after the freeze"
    finally:
        e2e.http.close()


def test_the_global_stop_holds_advancement_but_not_rollbacks_and_an_admin_can_let_one_through(
    emulator, table_store, clock
):
    e2e = controller(emulator, table_store, clock, windows=WORKDAY)
    try:
        admin = person("ada")
        release_id = e2e.submit(canary_event(steps=(50,)))
        assert e2e.service.get(release_id).held is not None
        e2e.service.override(release_id, OverrideKind.IGNORE_SCHEDULE, actor=admin, reason="hotfix for checkout")
        e2e.until(release_id, lambda r: r.phase is Phase.SHIFTING and r.step_started_at is not None, seconds=60)

        e2e.service.set_stop(True, actor=admin, reason="region incident")
        e2e.service._stop_cache = None  # as if another instance had pulled it: read at once
        e2e.until(release_id, lambda r: r.held is not None, seconds=300)
        assert "all releases are stopped: region incident" in e2e.service.get(release_id).held
        e2e.tick(release_id, 600)
        assert e2e.phase(release_id) is Phase.SHIFTING, "still held"
        e2e.override(release_id, "rollback", "not worth the risk today")
        e2e.until(release_id, lambda r: r.is_final, seconds=60)
        assert e2e.phase(release_id) is Phase.ROLLED_BACK, "rollbacks run while stopped"
        e2e.service.set_stop(False, actor=admin, reason="incident over")
        assert e2e.service.stop_reason() is None
    finally:
        e2e.http.close()


def test_a_release_submitted_in_a_freeze_waits_and_starts_when_it_ends(emulator, table_store, clock):
    freeze = {"from": "2026-11-26T02:00:00+00:00", "to": "2026-11-26T03:30:00+00:00", "reason": "maintenance"}
    e2e = controller(emulator, table_store, clock, freezes=[freeze])
    try:
        release_id = e2e.submit(canary_event(steps=(50,)))
        release = e2e.service.get(release_id)
        assert release.phase is Phase.PENDING and "maintenance" in release.held
        assert release.held_until == datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
        e2e.until(release_id, lambda r: r.is_final, seconds=300)
        assert e2e.phase(release_id) is Phase.SUCCEEDED
        started = next(a.entry.at for a in e2e.service.audit(release_id) if a.entry.action == "deploy.started")
        assert started >= datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
    finally:
        e2e.http.close()
