"""The lifecycle's safety rules, one sentence each: desired state and drift, write-ahead traffic,
claimed swaps, failed releases holding their site, deadlines on the failure path, the alert outbox."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle
from shared.domain.lifecycle import OverrideRefused, apply_override, decide, override_refusal
from shared.domain.model import (
    BeginSwap,
    DeployToSlot,
    Gate,
    Observation,
    Override,
    OverrideKind,
    Phase,
    Release,
    SetWeight,
    SiteState,
    SlotObservation,
    SwapProgress,
    SwapState,
    SwapStatus,
)
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, person, spec

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
RID = "web-1.4.2"
OLD = "web-1.4.1"


def rel(doc=None, **state) -> Release:
    state.setdefault("phase_since", NOW - timedelta(minutes=1))
    return Release(spec=spec(doc if doc is not None else CANARY_EVENT), created_at=NOW - timedelta(minutes=5), **state)


def seen(production=OLD, staging=RID, weight=0.0, swap=None, active=RID) -> Observation:
    slots = SlotObservation(production, staging, True, weight, "slot.example", "prod.example", swap)
    return Observation(site=SiteState(spec().target.site_key, active=active), slots=slots)


def names(decision) -> list[str]:
    return [type(e).__name__ for e in decision.effects]


# -- desired state and drift ----------------------------------------------------------------------


def test_every_phase_has_a_desired_shape():
    assert set(lifecycle.DESIRED) == set(Phase)


@pytest.mark.parametrize("phase", [Phase.VALIDATING, Phase.AWAITING_APPROVAL])
def test_a_rule_found_before_traffic_is_allowed_goes_back_to_zero_even_when_paused(phase):
    r = rel(phase=phase, paused=True, gate=Gate.BEFORE_TRAFFIC if phase is Phase.AWAITING_APPROVAL else None)
    decision = decide(r, seen(weight=10), NOW)
    assert decision.effects == (SetWeight(0.0),)
    assert "weight.drift" in [a.action for a in decision.audit]


def test_a_rule_left_on_the_site_is_removed_before_the_new_version_is_deployed():
    decision = decide(rel(phase=Phase.DEPLOYING), seen(staging=OLD, weight=10), NOW)
    assert names(decision) == ["SetWeight", "DeployToSlot"]
    assert decision.effects[0] == SetWeight(0.0) and isinstance(decision.effects[1], DeployToSlot)


def test_a_step_paused_before_its_weight_was_applied_does_not_raise_it():
    r = rel(phase=Phase.SHIFTING, step=0, weight=10.0, reached_users=True, paused=True)
    assert decide(r, seen(weight=0), NOW).effects == ()


def test_a_slot_that_runs_another_release_while_shifting_is_rolled_back_to_zero():
    r = rel(phase=Phase.SHIFTING, step=0, weight=10.0, reached_users=True, step_started_at=NOW)
    decision = decide(r, seen(staging="someone-else", weight=10), NOW)
    assert decision.release.phase is Phase.ROLLING_BACK and "deployed outside the controller" in decision.release.reason
    assert decision.effects == (SetWeight(0.0),)


def test_the_stored_state_always_allows_the_traffic_a_decision_asks_for():
    r = rel(phase=Phase.VALIDATING)
    assert lifecycle.allowed_weight(r) == 0
    entering = rel(phase=Phase.SHIFTING, step=0, weight=10.0)
    assert lifecycle.allowed_weight(entering) == 10
    assert lifecycle.allowed_weight(rel(phase=Phase.PROMOTING, reached_production=True)) == 100
    assert lifecycle.allowed_weight(rel(phase=Phase.FAILED)) is None


# -- swaps are claimed --------------------------------------------------------------------------------


def promoting(**state) -> Release:
    return rel(BLUE_GREEN_EVENT, phase=Phase.PROMOTING, **state)


def test_a_promotion_claims_its_swap_and_raises_the_ceiling_to_production():
    decision = decide(promoting(), seen(staging="api-2.0.0"), NOW)
    assert names(decision) == ["BeginSwap"]
    assert decision.release.swap == SwapProgress("promote", NOW) and decision.release.reached_production


def test_a_fresh_claim_whose_start_was_not_recorded_is_waited_for():
    r = promoting(swap=SwapProgress("promote", NOW - timedelta(minutes=2)))
    decision = decide(r, seen(staging="api-2.0.0"), NOW)
    assert decision.effects == () and decision.release.phase is Phase.PROMOTING


def test_an_old_unconfirmed_claim_with_production_unchanged_is_claimed_again():
    r = promoting(swap=SwapProgress("promote", NOW - timedelta(minutes=31)), phase_since=NOW - timedelta(minutes=5))
    decision = decide(r, seen(staging="api-2.0.0"), NOW)
    assert names(decision) == ["BeginSwap"] and decision.release.swap.claimed_at == NOW


def test_an_unconfirmed_claim_with_production_on_the_release_is_a_finished_swap():
    r = promoting(swap=SwapProgress("promote", NOW - timedelta(minutes=1)))
    decision = decide(r, seen(production="api-2.0.0", staging=OLD), NOW)
    assert decision.release.phase is Phase.GUARDING and decision.effects == ()


def test_a_rollback_waits_for_an_unconfirmed_promotion_swap_before_finishing():
    r = rel(BLUE_GREEN_EVENT, phase=Phase.ROLLING_BACK, swap=SwapProgress("promote", NOW - timedelta(minutes=3)))
    waiting = decide(r, seen(staging="api-2.0.0"), NOW)
    assert waiting.release.phase is Phase.ROLLING_BACK and waiting.release.swap is not None
    later = decide(r, seen(staging="api-2.0.0"), NOW + timedelta(minutes=30))
    assert later.release.phase is Phase.ROLLED_BACK


def test_a_promotion_swap_is_withdrawn_if_the_release_was_rolled_back_after_the_claim():
    claim = SwapProgress("promote", NOW)
    rolled = rel(BLUE_GREEN_EVENT, phase=Phase.ROLLING_BACK, swap=claim)
    withdrawn = lifecycle.swap_withdrawn(rolled, claim.claimed_at, NOW)
    assert withdrawn is not None and withdrawn.release.swap is None
    assert lifecycle.swap_withdrawn(promoting(swap=claim), claim.claimed_at, NOW) is None


def test_a_swap_token_is_recorded_only_for_the_claim_that_asked_for_it():
    claim = SwapProgress("promote", NOW)
    r = promoting(swap=claim)
    assert lifecycle.swap_started(r, NOW, "token", NOW).release.swap.token == "token"
    assert lifecycle.swap_started(r, NOW - timedelta(seconds=1), "token", NOW) is None


def test_a_swap_the_platform_refused_drops_the_claim_and_takes_the_rollback_path():
    r = promoting(swap=SwapProgress("promote", NOW))
    decision = lifecycle.swap_not_started(r, NOW, "409 ScopeLocked", NOW, terminal=True)
    assert decision.release.phase is Phase.ROLLING_BACK and decision.release.swap is None


# -- a failed release holds its site ----------------------------------------------------------------


def failed(**state) -> Release:
    state.setdefault("holds_site", True)
    return rel(phase=Phase.FAILED, reason="could not remove the rule", **state)


def test_a_failed_release_keeps_watching_its_site_and_frees_it_once_clean():
    assert lifecycle.needs(failed(), SiteState("s")).slots
    still = decide(failed(), seen(weight=10), NOW)
    assert still.release.holds_site and still.release.next_check_at is not None
    clean = decide(failed(), seen(weight=0), NOW)
    assert not clean.release.holds_site and "site.released" in [a.action for a in clean.audit]
    assert clean.effects == ()


def test_a_failed_release_in_production_keeps_the_site():
    assert decide(failed(), seen(production=RID, staging=OLD), NOW).release.holds_site


def test_a_failed_release_waits_for_its_running_swap_to_end():
    r = failed(swap=SwapProgress("rollback", NOW - timedelta(minutes=40), "tok"))
    running = decide(r, seen(swap=SwapState(SwapStatus.IN_PROGRESS)), NOW)
    assert running.release.holds_site
    ended = decide(r, seen(swap=SwapState(SwapStatus.SUCCEEDED)), NOW)
    assert not ended.release.holds_site and ended.release.swap is None


def test_the_next_release_queues_behind_a_failed_release_that_holds_the_site():
    arriving = lifecycle.new_release(spec(CANARY_EVENT | {"releaseId": "web-9"}), NOW, actor="ci", source="t")
    admission = lifecycle.admit(SiteState("s", active=RID), arriving, failed(), None, NOW)
    assert admission.site.active == RID and admission.site.queued == "web-9"
    assert "release-site" in admission.decisions[0].audit[-1].message
    assert lifecycle.site_after(SiteState("s", active=RID, queued="web-9"), failed()).active == RID
    freed = lifecycle.site_after(SiteState("s", active=RID, queued="web-9"), failed(holds_site=False))
    assert freed.active == "web-9"


def test_release_site_is_a_persons_word_for_a_failed_release_only():
    assert override_refusal(rel(phase=Phase.ROLLED_BACK), OverrideKind.RELEASE_SITE, NOW)
    assert override_refusal(failed(holds_site=False), OverrideKind.RELEASE_SITE, NOW) == "the site is already free"
    tracked = failed(swap=SwapProgress("rollback", NOW - timedelta(hours=2), "tok"))
    assert "has not been seen to end" in override_refusal(tracked, OverrideKind.RELEASE_SITE, NOW)
    released = apply_override(failed(), Override(OverrideKind.RELEASE_SITE, person("oncall"), "swapped by hand"), NOW)
    assert not released.release.holds_site and released.audit[0].actor == "oncall (aad:tests/oncall)"
    assert released.release.phase is Phase.FAILED


# -- supersede only what has not started to matter -----------------------------------------------


@pytest.mark.parametrize(
    ("state", "supersedable"),
    [
        ({"phase": Phase.VALIDATING}, True),
        ({"phase": Phase.ROLLING_BACK, "reason": "x"}, False),
        ({"phase": Phase.SHIFTING, "step": 0, "weight": 10.0, "reached_users": True}, False),
        ({"phase": Phase.AWAITING_APPROVAL, "gate": Gate.BEFORE_TRAFFIC}, True),
        ({"phase": Phase.PROMOTING}, False),
    ],
)
def test_only_a_release_still_being_prepared_is_superseded(state, supersedable):
    assert lifecycle.supersedable(rel(**state)) is supersedable


# -- deadlines run on the failure path too ------------------------------------------------------------


def test_a_rollback_the_platform_keeps_failing_ends_failed_at_its_deadline():
    r = rel(phase=Phase.ROLLING_BACK, reason="bad", weight=10.0, phase_since=NOW - timedelta(minutes=31))
    decision = lifecycle.transient_failure(r, "could not get a token", NOW)
    assert decision.release.phase is Phase.FAILED and decision.release.holds_site
    assert [a.severity for a in decision.release.outbox] == ["error"]


def test_a_rollback_held_up_by_the_platform_warns_on_its_third_attempt():
    r = rel(phase=Phase.ROLLING_BACK, reason="bad", transient_failures=2)
    decision = lifecycle.transient_failure(r, "503", NOW)
    assert decision.release.phase is Phase.ROLLING_BACK and decision.release.next_check_at == NOW + timedelta(seconds=5)
    assert [a.severity for a in decision.release.outbox] == ["warning"]


def test_a_canary_whose_platform_fails_past_the_progress_deadline_rolls_back():
    r = rel(phase=Phase.SHIFTING, step=0, weight=10.0, failing_since=NOW - timedelta(minutes=30), transient_failures=9)
    decision = lifecycle.transient_failure(r, "429", NOW)
    assert decision.release.phase is Phase.ROLLING_BACK and "kept failing" in decision.release.reason


def test_a_pending_release_that_cannot_reach_the_platform_keeps_waiting_and_says_so_once():
    r = rel(phase=Phase.PENDING, transient_failures=4, failing_since=NOW - timedelta(hours=2))
    decision = lifecycle.transient_failure(r, "503", NOW)
    assert decision.release.phase is Phase.PENDING and len(decision.release.outbox) == 1
    again = lifecycle.transient_failure(decision.release, "503", NOW)
    assert len(again.release.outbox) == 1


def test_a_swap_start_in_a_decision_keeps_the_failure_count_until_the_platform_accepts_it():
    r = promoting(transient_failures=2, failing_since=NOW - timedelta(minutes=1))
    decision = decide(r, seen(staging="api-2.0.0"), NOW)
    assert BeginSwap("promote") in decision.effects and decision.release.transient_failures == 2


# -- alerts are kept until delivered -----------------------------------------------------------------


def test_alerts_stay_in_the_outbox_until_each_is_recorded_as_sent():
    r = rel(phase=Phase.ROLLING_BACK, reason="bad")
    done = decide(r, seen(weight=0), NOW).release
    assert done.phase is Phase.ROLLED_BACK and len(done.outbox) == 1 and not done.settled
    sent = lifecycle.alerts_sent(done, {done.outbox[0].seq}, NOW)
    assert sent.release.outbox == () and sent.release.settled
    assert sent.audit[0].action == "alert.sent"
    assert lifecycle.alerts_sent(sent.release, {1}, NOW) is None


def test_an_override_never_asks_for_a_platform_action():
    for kind in (OverrideKind.PAUSE, OverrideKind.ROLLBACK, OverrideKind.PROMOTE_FULL):
        r = rel(phase=Phase.SHIFTING, step=0, weight=10.0)
        if override_refusal(r, kind) is None:
            assert apply_override(r, Override(kind, person("pat"), "x"), NOW).effects == ()
    with pytest.raises(OverrideRefused):
        apply_override(replace(rel(), phase=Phase.SUCCEEDED), Override(OverrideKind.PAUSE, person("pat"), "x"), NOW)
