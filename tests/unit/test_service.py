"""The service layer over in-memory adapters: whole releases, failures, concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.adapters.memory import InMemoryReleaseStore
from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import Measurement, OverrideKind, Phase, ProviderKind, VersionStats
from shared.ports import ConcurrencyConflict, ReleaseIdConflict, TerminalPlatformError, TransientPlatformError
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, body, event, harness, ingest, person, spec

RID = "web-1.4.2"


def drive(h, release_id, *, seconds=60, limit=60, approve=False):
    """Tick until the release is final (approving when asked to). Returns the phases seen."""
    seen = [h.phase(release_id)]
    for _ in range(limit):
        release = h.service.get(release_id)
        if release.is_final:
            break
        if approve and release.phase is Phase.AWAITING_APPROVAL:
            h.service.override(release_id, OverrideKind.APPROVE, actor=person("carol"), reason="looks good")
        h.tick(release_id, seconds)
        if seen[-1] != h.phase(release_id):
            seen.append(h.phase(release_id))
    return seen


def until(h, release_id, phase, limit=20):
    for _ in range(limit):
        if h.phase(release_id) == phase:
            return
        h.tick(release_id)
    raise AssertionError(f"{release_id} never reached {phase}; it is {h.phase(release_id)}")


def test_a_canary_goes_through_every_phase_and_its_audit_tells_the_story():
    h = harness()
    h.platform.add_site(spec().target, production_release="web-1.4.1", version="1.4.1")
    result = ingest(h.service, body(CANARY_EVENT), message_id="m1", source="serviceBus")
    assert result.outcome == "created"
    assert result.release.phase is Phase.DEPLOYING, "ingestion starts the first action at once"
    assert h.platform.calls[:2] == [("observe", spec().target.site_key), ("deploy", spec().target.site_key)]

    phases = drive(h, RID)
    assert phases == ["deploying", "validating", "shifting", "promoting", "succeeded"]
    site = h.platform.sites[spec().target.site_key]
    assert site.production.settings["RELEASE_ID"] == RID
    assert site.slots["staging"].settings["RELEASE_ID"] == "web-1.4.1", "the previous version is in staging"
    assert site.weight == 0

    audit = h.service.audit(RID)
    assert [a.seq for a in audit] == list(range(1, len(audit) + 1)), "the audit sequence is gapless"
    transitions = [
        (a.entry.phase_from.value, a.entry.phase_to.value) for a in audit if a.entry.phase_from != a.entry.phase_to
    ]
    assert transitions == [
        ("pending", "deploying"),
        ("deploying", "validating"),
        ("validating", "shifting"),
        ("shifting", "promoting"),
        ("promoting", "succeeded"),
    ]
    assert all(a.entry.actor and a.entry.message and a.entry.at for a in audit)
    weights = [a.entry.weight for a in audit if a.entry.action == "step.started"]
    assert weights == [10, 50]


def test_a_blue_green_release_guards_production_then_succeeds():
    h = harness()
    h.platform.add_site(spec(BLUE_GREEN_EVENT).target, production_release="api-1.9.0")
    ingest(h.service, body(BLUE_GREEN_EVENT), message_id=None, source="http")
    assert drive(h, "api-2.0.0") == ["deploying", "validating", "promoting", "guarding", "succeeded"]


def test_manual_promotion_waits_for_a_person_and_records_who_approved():
    h = harness()
    ingest(h.service, body(event(promotion="manual")), message_id=None, source="http")
    phases = drive(h, RID, approve=True)
    assert "awaitingApproval" in phases and phases[-1] == "succeeded"
    approvals = [a.entry for a in h.service.audit(RID) if a.entry.actor == person("carol").label]
    assert approvals and "looks good" in approvals[0].message


def test_an_invalid_event_is_stored_with_its_body_and_reason():
    h = harness()
    raw = b'{"version": 1}'
    result = ingest(h.service, raw, message_id="m9", source="serviceBus")
    assert result.outcome == "rejected"
    (stored,) = h.store.rejected
    assert stored.body == raw and stored.message_id == "m9"
    assert "target" in stored.reason and ("version", "must be a string") in stored.errors


def test_a_repeated_delivery_is_a_no_op():
    h = harness()
    first = ingest(h.service, body(CANARY_EVENT), message_id="m1", source="serviceBus")
    again = ingest(h.service, body(CANARY_EVENT), message_id="m1", source="serviceBus")
    assert first.outcome == "created" and again.outcome == "duplicate"
    assert len(h.service.list().items) == 1
    assert sum(1 for c in h.platform.calls if c[0] == "deploy") == 1


def test_the_same_release_id_with_a_different_plan_is_a_conflict():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    with pytest.raises(ReleaseIdConflict):
        ingest(h.service, body(event(version="9.9.9")), message_id=None, source="http")


def test_concurrent_deliveries_of_one_event_make_one_release():
    h = harness()
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: ingest(h.service, body(CANARY_EVENT), message_id="m1", source="sb"), range(16))
        )
    assert sorted(r.outcome for r in results).count("created") == 1
    assert len(h.service.list().items) == 1
    assert len([a for a in h.service.audit(RID) if a.entry.action == "release.created"]) == 1


def test_concurrent_overrides_never_lose_an_update():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    barrier = threading.Barrier(2)

    def act(kind):
        barrier.wait()
        try:
            h.service.override(RID, kind, actor=person(kind.value), reason="race")
            return "ok"
        except OverrideRefused as refused:
            return refused.reason

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(act, [OverrideKind.PAUSE, OverrideKind.ROLLBACK]))
    release = h.service.get(RID)
    actions = [a.entry.action for a in h.service.audit(RID)]
    # Either the pause landed first and the rollback re-decided on top of it, or the rollback
    # landed first and the pause was refused with the reason. Never a lost write.
    assert outcomes in (["ok", "ok"], ["a rollback cannot be paused", "ok"])
    assert "rollback.started" in actions
    assert ("override.pause" in actions) == (outcomes[0] == "ok")
    assert release.phase is Phase.ROLLING_BACK


def test_the_same_override_twice_at_once_applies_once_and_refuses_the_other():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    barrier = threading.Barrier(2)

    def pause(_):
        barrier.wait()
        try:
            h.service.override(RID, OverrideKind.PAUSE, actor=person("x"), reason="race")
            return "ok"
        except OverrideRefused as refused:
            return refused.reason

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(pause, range(2)))
    assert outcomes == ["ok", "the release is already paused"]


class ConflictOnce:
    """A store that lets another writer win the first commit, as a concurrent override would."""

    def __init__(self, inner: InMemoryReleaseStore, service_ref):
        self.inner = inner
        self.service_ref = service_ref
        self.fired = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def commit(self, site_key, writes, site=None):
        if not self.fired and writes and writes[0].etag is not None:
            self.fired = True
            self.service_ref().override(
                writes[0].release.id, OverrideKind.PAUSE, actor=person("dana"), reason="hold on"
            )
        return self.inner.commit(site_key, writes, site)


def test_a_reconcile_that_loses_an_etag_race_decides_again_on_fresh_state():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    h.service.store = ConflictOnce(h.store, lambda: h.service)
    h.tick(RID)
    release = h.service.get(RID)
    assert release.paused, "the override that won is kept"
    assert [a.seq for a in h.service.audit(RID)] == list(range(1, len(h.service.audit(RID)) + 1))


def test_a_transient_platform_failure_keeps_the_state_and_retries():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    before = h.service.get(RID)
    h.platform.fail_next("observe", TransientPlatformError("429 Too Many Requests", status=429))
    h.tick(RID)
    after = h.service.get(RID)
    assert after.phase is before.phase and after.transient_failures == 1
    assert "attempt 1" in h.service.audit(RID)[-1].entry.message
    assert drive(h, RID, seconds=120)[-1] == "succeeded"


def test_a_terminal_platform_failure_rolls_back_with_a_message_for_the_operator():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    until(h, RID, "shifting")
    h.platform.fail_next(
        "observe", TerminalPlatformError("403: grant the controller Website Contributor on the site", status=403)
    )
    h.tick(RID)
    assert h.phase(RID) == "rollingBack"
    assert "Website Contributor" in h.service.get(RID).reason
    assert drive(h, RID)[-1] == "rolledBack"
    assert h.platform.sites[spec().target.site_key].weight == 0
    assert any("rolled back" in m for _, _, m in h.notifier.sent)


def test_a_crash_after_the_swap_and_before_the_save_does_not_swap_twice():
    h = harness()
    ingest(
        h.service,
        body(event(strategy={"type": "canary", "steps": [{"weight": 50, "bake": 0}]})),
        message_id=None,
        source="http",
    )
    original_commit = h.store.commit
    crashed = {"done": False}

    def crash_once(site_key, writes, site=None):
        if not crashed["done"] and any(w.release.swap is not None for w in writes):
            crashed["done"] = True
            raise RuntimeError("worker died")
        return original_commit(site_key, writes, site)

    h.store.commit = crash_once
    for _ in range(10):
        try:
            h.tick(RID)
        except RuntimeError:
            continue
        if h.service.get(RID).is_final:
            break
    assert crashed["done"]
    assert h.phase(RID) == "succeeded"
    assert h.platform.swaps_started(spec().target) == 1


def test_a_second_release_supersedes_one_that_has_not_reached_users():
    h = harness()
    h.platform.warmup_observations = 5
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    newer = ingest(h.service, body(event(releaseId="web-1.4.3", version="1.4.3")), message_id=None, source="http")
    old = h.service.get(RID)
    assert old.phase is Phase.CANCELLED and old.superseded_by == "web-1.4.3"
    assert newer.release.phase is Phase.DEPLOYING


def test_a_second_release_queues_behind_a_canary_and_starts_when_it_finishes():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    until(h, RID, "shifting")
    queued = ingest(h.service, body(event(releaseId="web-1.4.3", version="1.4.3")), message_id=None, source="http")
    assert queued.release.phase is Phase.PENDING
    drive(h, RID)
    assert h.phase(RID) == "succeeded"
    assert h.phase("web-1.4.3") == "deploying", "the queued release starts the moment the site is free"


def test_retry_after_a_rollback_starts_a_linked_release_with_the_same_plan():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    h.service.override(RID, OverrideKind.ROLLBACK, actor=person("erin"), reason="wrong build")
    drive(h, RID)
    assert h.phase(RID) == "rolledBack"
    retried = h.service.override(RID, OverrideKind.RETRY, actor=person("erin"), reason="fixed config")
    assert retried.id == f"{RID}-retry1" and retried.spec.retry_of == RID
    assert retried.phase is Phase.DEPLOYING
    old = h.service.get(RID)
    assert old.phase is Phase.ROLLED_BACK and old.retried_as == retried.id
    with pytest.raises(OverrideRefused):
        h.service.override(RID, OverrideKind.RETRY, actor=person("erin"), reason="again")


def test_overrides_only_record_intent_and_never_call_app_service():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    calls = list(h.platform.calls)
    h.service.override(RID, OverrideKind.PAUSE, actor=person("x"), reason="y")
    h.service.override(RID, OverrideKind.RESUME, actor=person("x"), reason="y")
    h.service.override(RID, OverrideKind.ROLLBACK, actor=person("x"), reason="y")
    assert h.platform.calls == calls


def test_a_paused_release_holds_its_weight_until_resumed():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    until(h, RID, "shifting")
    h.tick(RID)
    h.service.override(RID, OverrideKind.PAUSE, actor=person("x"), reason="investigating")
    for _ in range(20):
        h.tick(RID, 120)
    release = h.service.get(RID)
    assert release.phase is Phase.SHIFTING and release.step == 0 and release.weight == 10
    h.service.override(RID, OverrideKind.RESUME, actor=person("x"), reason="all clear")
    assert drive(h, RID)[-1] == "succeeded"


def test_rollback_during_a_slow_swap_waits_for_it_and_swaps_back():
    h = harness(swap_duration=3)
    h.platform.add_site(spec(BLUE_GREEN_EVENT).target, production_release="api-1.9.0")
    ingest(h.service, body(BLUE_GREEN_EVENT), message_id=None, source="http")
    for _ in range(3):
        h.tick("api-2.0.0")
    assert h.phase("api-2.0.0") == "promoting"
    h.service.override("api-2.0.0", OverrideKind.ROLLBACK, actor=person("x"), reason="abort")
    assert drive(h, "api-2.0.0")[-1] == "rolledBack"
    site = h.platform.sites[spec(BLUE_GREEN_EVENT).target.site_key]
    assert site.production.settings["RELEASE_ID"] == "api-1.9.0"
    assert h.platform.swaps_started(spec(BLUE_GREEN_EVENT).target) == 2


def test_a_bad_canary_is_rolled_back_at_its_first_step():
    h = harness()
    bad = (Measurement(ProviderKind.HTTP, VersionStats(200, 40, 20.0), VersionStats(2000, 2, 20.0)),)
    h.analyzer.script = lambda release, now: bad
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    phases = drive(h, RID)
    assert phases[:3] == ["deploying", "validating", "shifting"] and phases[-1] == "rolledBack"
    actions = [a.entry.action for a in h.service.audit(RID)]
    assert actions.index("rollback.started") < actions.index("rollback.weight") < actions.index("rolledBack")
    assert max(a.entry.weight for a in h.service.audit(RID)) == 10
    assert "error rate 20.0%" in h.service.get(RID).reason


def test_the_timer_isolates_a_failing_release_from_the_others():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    ingest(h.service, body(BLUE_GREEN_EVENT), message_id=None, source="http")
    h.platform.fail_next("observe", RuntimeError("a bug"))
    h.clock.advance(60)
    report = h.service.reconcile_due(budget_seconds=60, concurrency=2)
    assert len(report.errors) == 1 and "a bug" in report.errors[0][1]
    assert len(report.reconciled) == 1


def test_the_timer_starts_nothing_after_its_budget():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    h.clock.advance(60)
    report = h.service.reconcile_due(budget_seconds=0, concurrency=1)
    assert report.skipped_for_budget == [RID]


def test_a_storage_outage_is_raised_so_the_message_is_redelivered():
    from shared.ports import StoreUnavailable

    h = harness()
    h.store.unavailable = True
    with pytest.raises(StoreUnavailable):
        ingest(h.service, body(CANARY_EVENT), message_id="m1", source="serviceBus")


def test_conflicts_that_never_stop_give_up_with_a_retryable_error():
    h = harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")

    def always_conflict(*args, **kwargs):
        raise ConcurrencyConflict("someone else")

    h.store.commit = always_conflict
    with pytest.raises(ConcurrencyConflict):
        h.service.override(RID, OverrideKind.PAUSE, actor=person("x"), reason="y")
