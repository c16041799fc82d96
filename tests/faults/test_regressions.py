"""The nine interleavings a randomized fault run found, one named test each, on both stores (and,
last, a fault the run found in the world itself).

Every test checks the invariants after every step (``World.check``), then heals the world and
checks that every release settles with its alerts delivered (``World.calm``).
"""

from __future__ import annotations

import pytest

from shared.domain.model import OverrideKind, Phase
from shared.ports import IdClaim, StoreUnavailable
from tests.builders import person
from tests.faults.world import Fault, World, target

WEB = "contoso-web"
API = "contoso-api"


STARTED = "started"  # past pending: it owns the site (a release can pass through deploying within one tick)


def until(world: World, release_id: str, phase: Phase | str, *, limit: int = 30, minutes: float = 1) -> None:
    for _ in range(limit):
        release = world.release(release_id)
        assert release is not None, f"{release_id} does not exist"
        if release.phase is phase or (phase == STARTED and release.phase is not Phase.PENDING):
            return
        world.run(lambda: world.tick(minutes))
        world.check()
    raise AssertionError(f"{release_id} never reached {phase}; it is {world.release(release_id).phase}")


def settle(world: World) -> None:
    world.calm()
    world.check_settled()


def phase(world: World, release_id: str) -> Phase:
    release = world.release(release_id)
    assert release is not None
    return release.phase


# 1 -------------------------------------------------------------------------------------------


def test_1_a_release_submitted_while_the_active_one_rolls_back_queues_instead_of_being_lost(world):
    world.submit(WEB, 1, "canary")
    until(world, "contoso-web-1", Phase.VALIDATING)
    assert world.override("contoso-web-1", OverrideKind.ROLLBACK).startswith("ok")
    assert world.submit(WEB, 2, "canary") == "created", "the event is stored, never lost"
    world.check()
    assert phase(world, "contoso-web-2") is Phase.PENDING, "it waits for the rollback to finish"
    until(world, "contoso-web-2", STARTED)
    assert phase(world, "contoso-web-1") is Phase.ROLLED_BACK
    settle(world)


def test_1_a_release_submitted_while_a_promoted_blue_green_release_swaps_back_queues(world):
    world.submit(API, 1, "blue-green")
    until(world, "contoso-api-1", Phase.GUARDING)
    assert world.override("contoso-api-1", OverrideKind.ROLLBACK).startswith("ok")
    assert world.submit(API, 2, "blue-green") == "created"
    world.check()
    assert phase(world, "contoso-api-2") is Phase.PENDING
    until(world, "contoso-api-1", Phase.ROLLED_BACK)
    assert world.platform.model.sites[target(API).site_key].production.settings["RELEASE_ID"] == "initial"
    settle(world)


# 2 -------------------------------------------------------------------------------------------


def validated(world: World, variant: str = "canary") -> str:
    world.submit(WEB, 1, variant)
    until(world, "contoso-web-1", Phase.VALIDATING)
    return "contoso-web-1"


def test_2_a_crash_as_the_first_step_starts_never_gives_traffic_its_phase_does_not_allow(world):
    release_id = validated(world)
    world.platform.faults.append(Fault("set_weight", "crash-after"))
    for _ in range(4):
        world.run(lambda: world.tick(1))
        world.check()
    assert phase(world, release_id) is Phase.SHIFTING
    settle(world)


@pytest.mark.parametrize("who", ["pause", "approve-like override", "next build"])
def test_2_someone_writing_between_the_routing_call_and_the_save_cannot_leak_traffic(world, who):
    release_id = validated(world)

    def interloper() -> None:
        if who == "pause":
            world.override(release_id, OverrideKind.PAUSE, actor=person("dana"))
        elif who == "next build":
            world.submit(WEB, 2, "canary")
        else:
            world.override(release_id, OverrideKind.PROMOTE_FULL, actor=person("erin"))

    world.store.before_commit = interloper
    world.run(lambda: world.tick(1))
    world.check()
    for _ in range(30):  # half an hour, paused or not: never more traffic than the stored phase allows
        world.run(lambda: world.tick(1))
        world.check()
    if who == "next build":
        first = world.release(release_id)
        assert first.phase is Phase.CANCELLED and world.traffic_on(release_id, first.site_key) == 0
    settle(world)


def test_2_a_lost_save_then_failing_checks_never_sends_users_to_the_failing_version(world):
    release_id = validated(world)
    world.store.crash_before_commit = True
    world.run(lambda: world.tick(1))
    world.check()
    world.validator.passed = False
    for _ in range(5):
        world.run(lambda: world.tick(1))
        world.check()
    assert world.traffic_on(release_id, target(WEB).site_key) == 0
    settle(world)


def test_2_a_leaked_rule_found_in_validation_goes_back_to_zero_before_anything_else(world):
    release_id = validated(world)
    world.platform.model.set_weight(target(WEB), 10.0)  # left by hand, or by an earlier release
    world.service.override(release_id, OverrideKind.PAUSE, actor=person("dana"), reason="hold")
    world.run(lambda: world.tick(1))
    assert world.platform.model.sites[target(WEB).site_key].weight == 0
    actions = [a.entry.action for a in world.service.audit(release_id)]
    assert "weight.drift" in actions
    settle(world)


# 3 -------------------------------------------------------------------------------------------


def test_3_a_canary_that_could_not_remove_its_rule_keeps_the_site_until_it_is_clean(world):
    world.submit(WEB, 1, "canary")
    until(world, "contoso-web-1", Phase.SHIFTING)
    world.run(lambda: world.tick(0))  # the step's weight is in place
    assert world.traffic_on("contoso-web-1", target(WEB).site_key) == 10
    world.submit(WEB, 2, "canary")
    assert world.override("contoso-web-1", OverrideKind.ROLLBACK).startswith("ok")
    world.platform.faults.append(Fault("set_weight", "terminal"))
    world.run(lambda: world.tick(1))
    world.check()
    failed = world.release("contoso-web-1")
    assert failed.phase is Phase.FAILED and failed.holds_site
    for _ in range(5):
        world.run(lambda: world.tick(5))
        world.check()
        assert phase(world, "contoso-web-2") is Phase.PENDING, "nothing deploys behind a rule nobody removed"
    world.platform.model.set_weight(target(WEB), 0.0)  # a person removes the rule by hand
    until(world, "contoso-web-2", STARTED, minutes=3)
    actions = [a.entry.action for a in world.service.audit("contoso-web-1")]
    assert "site.released" in actions
    settle(world)


def test_3_a_failed_swap_back_keeps_the_slot_with_the_last_good_version_until_a_person_acts(world):
    world.submit(API, 1, "blue-green")
    until(world, "contoso-api-1", Phase.GUARDING)
    world.submit(API, 2, "blue-green")
    world.platform.model.fail_next_swap_with = "ExpectationFailed: warm-up of the slot failed (417)"
    assert world.override("contoso-api-1", OverrideKind.ROLLBACK).startswith("ok")
    until(world, "contoso-api-1", Phase.FAILED)
    site = world.platform.model.sites[target(API).site_key]
    for _ in range(5):
        world.run(lambda: world.tick(5))
        world.check()
        assert phase(world, "contoso-api-2") is Phase.PENDING
        assert site.slots["staging"].settings["RELEASE_ID"] == "initial", "the last good version stays in the slot"
    assert world.override("contoso-api-1", OverrideKind.RELEASE_SITE, actor=person("oncall")).startswith("ok")
    until(world, "contoso-api-2", STARTED)
    settle(world)


# 4 -------------------------------------------------------------------------------------------


def test_4_a_rollback_the_platform_keeps_refusing_fails_at_its_deadline_with_alerts(world):
    world.submit(WEB, 1, "canary")
    until(world, "contoso-web-1", Phase.SHIFTING)
    world.run(lambda: world.tick(0))
    assert world.override("contoso-web-1", OverrideKind.ROLLBACK).startswith("ok")
    world.platform.token_outage = 10_000  # every token request fails (a deleted managed identity)
    for _ in range(8):
        world.run(lambda: world.tick(5))
        world.check()
    failed = world.release("contoso-web-1")
    assert failed.phase is Phase.FAILED, failed.phase
    assert "token" in failed.reason
    alerts = [(severity, m) for rid, severity, m in world.notifier.sent if rid == "contoso-web-1"]
    assert any(s == "warning" and "held up" in m for s, m in alerts), "a warning while it keeps trying"
    assert any(s == "error" and "failed" in m for s, m in alerts)
    world.platform.token_outage = 0
    settle(world)


# 5 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["worker dies after the save", "notifier down"])
def test_5_the_failed_alert_is_delivered_even_when_the_first_attempt_is_lost(world, fault):
    world.submit(WEB, 1, "canary")
    until(world, "contoso-web-1", Phase.SHIFTING)
    assert world.override("contoso-web-1", OverrideKind.ROLLBACK).startswith("ok")
    world.platform.faults.append(Fault("set_weight", "terminal"))
    if fault == "worker dies after the save":
        world.store.crash_after_commit = True
    else:
        world.notifier.failures = 3
    world.run(lambda: world.tick(1))
    assert phase(world, "contoso-web-1") is Phase.FAILED
    for _ in range(4):
        world.run(lambda: world.tick(1))
    errors = [m for rid, s, m in world.notifier.sent if rid == "contoso-web-1" and s == "error"]
    assert errors and "failed" in errors[0]
    assert world.release("contoso-web-1").outbox == ()
    settle(world)


# 6 -------------------------------------------------------------------------------------------


def test_6_a_retry_never_takes_an_id_another_site_holds(world):
    world.submit(WEB, 1, "canary")
    world.service.override("contoso-web-1", OverrideKind.ROLLBACK, actor=person("pat"), reason="bad")
    until(world, "contoso-web-1", Phase.ROLLED_BACK)
    taken = world.service.store.claim_release_id(
        IdClaim("contoso-web-1-retry1", target(API).site_key, "another plan", world.clock.now())
    )
    assert taken.site_key == target(API).site_key
    retried = world.service.override("contoso-web-1", OverrideKind.RETRY, actor=person("pat"), reason="again")
    assert retried.id == "contoso-web-1-retry2" and retried.site_key == target(WEB).site_key
    assert world.submit(WEB, 3, "canary") == "created", "the site keeps taking releases"
    world.check()
    settle(world)


# 7 -------------------------------------------------------------------------------------------


def test_7_a_tick_between_claiming_and_creating_a_late_release_never_forgets_it(disk_azurite):
    """Table Storage only: there the id claim and the release row are separate writes. (The due
    index entry is written in the release's own transaction, so it can never be missing.)"""
    from tests.faults.conftest import table_world

    world = table_world(disk_azurite)
    store = world.raw_store
    # The event's first delivery claimed the id 20 minutes ago, then storage failed.
    store.claim_release_id(IdClaim("contoso-web-1", target(WEB).site_key, _fingerprint(WEB, 1), world.clock.now()))
    world.clock.advance(20 * 60)
    # The redelivery claims again (finding the first claim); a tick lands before its creation commits.
    claim = store.claim_release_id

    def claim_then_tick(wanted):
        result = claim(wanted)
        store.claim_release_id = claim
        world.run(lambda: world.tick(0))
        return result

    store.claim_release_id = claim_then_tick
    assert world.submit(WEB, 1, "canary") == "created"
    assert store.claim_release_id == claim, "the tick ran between the claim and the creation"
    assert "contoso-web-1" in [r.release_id for r in store.list_active()]
    until(world, "contoso-web-1", Phase.VALIDATING)
    settle(world)


def _fingerprint(site: str, version: int) -> str:
    from shared.domain.schema import parse_release_event, spec_fingerprint
    from tests.faults.world import body, release_event

    return spec_fingerprint(parse_release_event(body(release_event(site, version, "canary"))))


# 8 -------------------------------------------------------------------------------------------


def promoting(world: World) -> str:
    world.submit(API, 1, "blue-green")
    until(world, "contoso-api-1", Phase.VALIDATING)
    return "contoso-api-1"


def test_8_two_reconcilers_on_a_promotion_start_one_swap(world):
    release_id = promoting(world)
    # A second reconciler runs right before the first asks the platform for anything.
    world.platform.before_change = lambda: world.run(lambda: world.service.reconcile(release_id, force=True))
    for _ in range(6):
        world.run(lambda: world.tick(1))
        world.check()
    into = [s for s in world.platform.swaps if s[1] == release_id]
    assert len(into) == 1
    assert phase(world, release_id) in (Phase.GUARDING, Phase.SUCCEEDED)
    settle(world)
    assert phase(world, release_id) is Phase.SUCCEEDED


@pytest.mark.parametrize("swap_observations", [0, 4])
def test_8_a_worker_dying_after_starting_the_swap_never_starts_it_again(world, swap_observations):
    world.platform.model.swap_duration = swap_observations
    release_id = promoting(world)
    world.platform.faults.append(Fault("begin_swap", "crash-after"))
    for _ in range(12):
        world.run(lambda: world.tick(1))
        world.check()
    assert len([s for s in world.platform.swaps if s[1] == release_id]) == 1
    settle(world)
    assert phase(world, release_id) is Phase.SUCCEEDED


def test_8_a_swap_request_that_got_no_answer_is_settled_by_what_the_slots_show(world):
    world.platform.model.swap_duration = 2
    release_id = promoting(world)
    world.platform.faults.append(Fault("begin_swap", "no-answer"))
    for _ in range(10):
        world.run(lambda: world.tick(1))
        world.check()
    assert len([s for s in world.platform.swaps if s[1] == release_id]) == 1
    settle(world)


# 9 -------------------------------------------------------------------------------------------


def test_9_releases_survive_a_storage_restart_and_the_controller_carries_on(disk_azurite):
    from tests.faults.conftest import table_world

    world = table_world(disk_azurite)
    world.submit(WEB, 1, "canary")
    until(world, "contoso-web-1", Phase.SHIFTING)
    world.restart_storage()
    assert world.release("contoso-web-1").phase is Phase.SHIFTING, "acknowledged writes survive"
    settle(world)


def test_9_a_storage_reset_is_unavailable_storage_and_the_tables_come_back():
    from devstack.azurite import start_azurite
    from shared.adapters.table_store import TableReleaseStore

    server = start_azurite()  # in memory: a restart loses every table, like a reset account
    try:
        store = TableReleaseStore.from_connection_string(server.connection_string, prefix="reset", retry_total=0)
        world = World(store)
        world.submit(WEB, 1, "canary")
        server.restart()
        with pytest.raises(StoreUnavailable, match="missing"):
            store.load_site(target(WEB).site_key)
        assert store.find_release("contoso-web-1") is None, "the next call works again, on new tables"
        assert world.submit(WEB, 2, "canary") == "created"
    finally:
        server.stop()


def test_9_the_local_stack_starts_storage_that_stopped_again_with_its_data(tmp_path):
    import signal

    from devstack.azurite import start_azurite
    from shared.adapters.table_store import TableReleaseStore

    server = start_azurite(location=tmp_path)
    try:
        world = World(TableReleaseStore.from_connection_string(server.connection_string, retry_total=0))
        world.submit(WEB, 1, "canary")
        server.process.send_signal(signal.SIGINT)  # someone stops it (it writes its data out)
        server.process.wait(timeout=10)
        assert server.ensure_running()
        assert world.release("contoso-web-1") is not None
        settle(world)
    finally:
        server.stop()


# The world itself ------------------------------------------------------------------------------


def test_the_same_event_delivered_again_is_the_plan_that_won_its_id_not_the_first_body_tried(world):
    """The long run's "the only plan ever sent as contoso-api-1 was refused": a first body for
    contoso-api-3 was lost to an outage before it claimed the id and another plan won it; "the same
    event, delivered again" sent the lost body from inside contoso-api-1's save, and the refusal it
    rightly got escaped into that save and was blamed on contoso-api-1."""
    from tests.faults.machine import Interleavings

    steps = Interleavings()
    steps.world = world
    steps.fault(("storage outage", 1, None))
    steps.submit(API, 3, 0, True)  # lost to the outage before it claims the id
    steps.every_invariant_holds()
    steps.submit(API, 3, 0, False)  # another plan wins the id
    steps.every_invariant_holds()
    assert world.known == ["contoso-api-3"]
    steps.someone_else_acts("before a save", "same event", 0, WEB)
    assert world.submit(API, 1, "canary") == "created"
    assert world.store.before_commit is None, "the event was delivered again inside contoso-api-1's save"
    world.check()
    settle(world)


def test_a_redelivery_the_controller_refuses_is_blamed_on_its_own_id_not_on_the_save_it_interrupts(world):
    from tests.faults.world import body, release_event

    assert world.submit(API, 3, "canary") == "created"
    world.bodies["contoso-api-3"] = body(release_event(API, 3, "blue-green"))  # not the plan holding the id
    world.store.before_commit = lambda: world.run(lambda: world.redeliver("contoso-api-3"))
    assert world.submit(API, 1, "canary") == "created"
    assert [v.detail for v in world.violations] == [
        "contoso-api-3, delivered again with the plan it holds, was refused"
    ]
