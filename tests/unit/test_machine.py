"""decide() and the override rules, one sentence per behaviour."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle as machine
from shared.domain.lifecycle import OverrideRefused, admit, apply_override, decide, new_release, plan_retry, site_after
from shared.domain.model import (
    AnalysisProgress,
    BeginSwap,
    Check,
    CheckResult,
    DeployToSlot,
    Gate,
    LastGood,
    Measurement,
    Observation,
    Override,
    OverrideKind,
    Phase,
    Promotion,
    ProviderKind,
    Release,
    RestoreStaging,
    SetWeight,
    SiteState,
    SlotObservation,
    SwapProgress,
    SwapState,
    SwapStatus,
    ValidationProgress,
    VersionStats,
)
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, event, person, spec

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
RID = "web-1.4.2"
OLD = "web-1.4.1"


def rel(doc=None, **state) -> Release:
    s = spec(doc if doc is not None else CANARY_EVENT)
    state.setdefault("phase_since", NOW)
    return Release(spec=s, created_at=NOW - timedelta(minutes=1), **state)


def site(active=RID, last_good=None) -> SiteState:
    return SiteState(site_key=spec().target.site_key, active=active, last_good=last_good)


def slots(production=OLD, staging=None, ready=True, weight=0.0, swap=None) -> SlotObservation:
    return SlotObservation(
        production_release=production,
        staging_release=staging,
        staging_ready=ready,
        weight=weight,
        staging_host="contoso-web-staging.azurewebsites.net",
        production_host="contoso-web.azurewebsites.net",
        swap=swap,
    )


def obs(s=None, sl=None, checks=None, measurements=None, site_state=None) -> Observation:
    return Observation(site=site_state or site(), slots=sl, checks=checks, measurements=measurements)


def passing(n=1):
    return tuple(CheckResult(Check("/healthz"), True, 200) for _ in range(n))


def failing():
    return (CheckResult(Check("/healthz"), False, 503, detail="body did not contain ok"),)


def measured(
    canary_requests=200,
    canary_errors=0,
    canary_latency=20.0,
    stable_requests=2000,
    stable_errors=0,
    stable_latency=20.0,
):
    return (
        Measurement(
            ProviderKind.HTTP,
            VersionStats(canary_requests, canary_errors, canary_latency),
            VersionStats(stable_requests, stable_errors, stable_latency),
        ),
    )


def shifting(step=0, started=NOW - timedelta(minutes=1), **state):
    weight = spec().strategy.steps[step].weight
    return rel(phase=Phase.SHIFTING, step=step, weight=weight, step_started_at=started, **state)


def effect_types(decision):
    """The decision's effects by name, then one "Alert" per alert it recorded for delivery."""
    return [type(e).__name__ for e in decision.effects] + ["Alert"] * len(decision.release.outbox)


def actions(decision):
    return [a.action for a in decision.audit]


# ---------------------------------------------------------------------------------------------
# decide(): one row per behaviour. (sentence, release, observation, minutes later, phase, effects)
# ---------------------------------------------------------------------------------------------

CASES = [
    (
        "a pending release whose site is busy keeps waiting",
        rel(),
        obs(site_state=site(active="other")),
        0,
        Phase.PENDING,
        [],
    ),
    (
        "a pending release whose turn has come deploys at once",
        rel(),
        obs(sl=slots()),
        0,
        Phase.DEPLOYING,
        ["DeployToSlot"],
    ),
    ("a paused pending release does not start", rel(paused=True), obs(sl=slots()), 0, Phase.PENDING, []),
    (
        "a deploying release waits while its slot warms up",
        rel(phase=Phase.DEPLOYING, deploy_attempts=1),
        obs(sl=slots(staging=RID, ready=False)),
        1,
        Phase.DEPLOYING,
        [],
    ),
    (
        "a deployed and answering slot moves the release to validation",
        rel(phase=Phase.DEPLOYING, deploy_attempts=1),
        obs(sl=slots(staging=RID)),
        1,
        Phase.VALIDATING,
        [],
    ),
    (
        "a deployment that never takes effect is rolled back after three attempts",
        rel(phase=Phase.DEPLOYING, deploy_attempts=3),
        obs(sl=slots(staging="someone-else")),
        1,
        Phase.ROLLED_BACK,
        ["Alert"],
    ),
    (
        "a slot that never becomes ready is rolled back at the progress deadline",
        rel(phase=Phase.DEPLOYING, deploy_attempts=1),
        obs(sl=slots(staging=RID, ready=False)),
        31,
        Phase.ROLLED_BACK,
        ["Alert"],
    ),
    (
        "validation that has not reached its streak waits for another round",
        rel(phase=Phase.VALIDATING),
        obs(sl=slots(staging=RID), checks=passing()),
        1,
        Phase.VALIDATING,
        [],
    ),
    (
        "validation reaching its streak saves the first canary step before any traffic moves",
        rel(phase=Phase.VALIDATING, validation=ValidationProgress(1, 1, 0)),
        obs(sl=slots(staging=RID), checks=passing()),
        1,
        Phase.SHIFTING,
        [],
    ),
    (
        "a failing validation round is recorded but tolerated below the limit",
        rel(phase=Phase.VALIDATING),
        obs(sl=slots(staging=RID), checks=failing()),
        1,
        Phase.VALIDATING,
        [],
    ),
    (
        "validation failing at the limit rolls back before any user traffic",
        rel(phase=Phase.VALIDATING, validation=ValidationProgress(2, 0, 2)),
        obs(sl=slots(staging=RID), checks=failing()),
        1,
        Phase.ROLLED_BACK,
        ["Alert"],
    ),
    (
        "validation that does not pass within its deadline rolls back",
        rel(phase=Phase.VALIDATING),
        obs(sl=slots(staging=RID)),
        11,
        Phase.ROLLED_BACK,
        ["Alert"],
    ),
    (
        "a step whose weight is not in place yet re-applies it",
        shifting(started=None),
        obs(sl=slots(staging=RID, weight=0)),
        0,
        Phase.SHIFTING,
        ["SetWeight"],
    ),
    (
        "a step whose weight is verified starts baking",
        shifting(started=None),
        obs(sl=slots(staging=RID, weight=10)),
        0,
        Phase.SHIFTING,
        [],
    ),
    (
        "a baking step with healthy evidence holds until the bake ends",
        shifting(),
        obs(sl=slots(staging=RID, weight=10), measurements=measured()),
        0,
        Phase.SHIFTING,
        [],
    ),
    (
        "a step with healthy evidence after its bake saves the next step before raising the weight",
        shifting(),
        obs(sl=slots(staging=RID, weight=10), measurements=measured()),
        5,
        Phase.SHIFTING,
        [],
    ),
    (
        "the last step completed with auto promotion clears the route and claims the swap",
        shifting(step=1),
        obs(sl=slots(staging=RID, weight=50), measurements=measured()),
        10,
        Phase.PROMOTING,
        ["SetWeight", "BeginSwap"],
    ),
    (
        "a saved promotion starts the swap",
        rel(phase=Phase.PROMOTING, step=1),
        obs(sl=slots(staging=RID, weight=0)),
        0,
        Phase.PROMOTING,
        ["BeginSwap"],
    ),
    (
        "a canary failing its error rule rolls back in the same tick with weight 0",
        shifting(),
        obs(sl=slots(staging=RID, weight=10), measurements=measured(canary_errors=40)),
        0,
        Phase.ROLLING_BACK,
        ["SetWeight"],
    ),
    (
        "a paused step holds its weight and does not advance",
        shifting(paused=True),
        obs(sl=slots(staging=RID, weight=10), measurements=measured()),
        30,
        Phase.SHIFTING,
        [],
    ),
    (
        "a paused step still rolls back on failing evidence",
        shifting(paused=True),
        obs(sl=slots(staging=RID, weight=10), measurements=measured(canary_errors=40)),
        0,
        Phase.ROLLING_BACK,
        ["SetWeight"],
    ),
    (
        "a swap in progress is waited for, never started twice",
        rel(phase=Phase.PROMOTING, swap=SwapProgress("promote", NOW, "tok")),
        obs(sl=slots(staging=RID, swap=SwapState(SwapStatus.IN_PROGRESS))),
        1,
        Phase.PROMOTING,
        [],
    ),
    (
        "a failed swap rolls back",
        rel(phase=Phase.PROMOTING, swap=SwapProgress("promote", NOW, "tok")),
        obs(sl=slots(staging=RID, swap=SwapState(SwapStatus.FAILED, "Conflict"))),
        1,
        Phase.ROLLED_BACK,
        ["Alert"],
    ),
    (
        "production already running the release after a crash is taken as a finished swap",
        rel(phase=Phase.PROMOTING),
        obs(sl=slots(production=RID, staging=OLD)),
        1,
        Phase.SUCCEEDED,
        [],
    ),
    (
        "a blue-green swap that completed starts the guard window",
        rel(BLUE_GREEN_EVENT, phase=Phase.PROMOTING, swap=SwapProgress("promote", NOW, "tok")),
        obs(sl=slots(production="api-2.0.0", staging=OLD, swap=SwapState(SwapStatus.SUCCEEDED))),
        1,
        Phase.GUARDING,
        [],
    ),
    (
        "a rollback with traffic on the new version sets weight 0",
        rel(phase=Phase.ROLLING_BACK, weight=10, reason="x"),
        obs(sl=slots(staging=RID, weight=10)),
        0,
        Phase.ROLLING_BACK,
        ["SetWeight"],
    ),
    (
        "a rollback after promotion swaps the previous version back",
        rel(phase=Phase.ROLLING_BACK, reason="x"),
        obs(sl=slots(production=RID, staging=OLD)),
        0,
        Phase.ROLLING_BACK,
        ["BeginSwap"],
    ),
    (
        "a rollback with weight 0 and production on the old version is complete",
        rel(phase=Phase.ROLLING_BACK, reason="x"),
        obs(sl=slots(staging=RID)),
        0,
        Phase.ROLLED_BACK,
        ["Alert"],
    ),
    (
        "a completed rollback puts the last good release back on the staging slot",
        rel(phase=Phase.ROLLING_BACK, reason="x"),
        obs(sl=slots(staging=RID), site_state=site(last_good=LastGood(OLD, "1.4.1", spec().artifact))),
        0,
        Phase.ROLLED_BACK,
        ["RestoreStaging", "Alert"],
    ),
    (
        "a failed swap back is a failure a person must handle",
        rel(phase=Phase.ROLLING_BACK, reason="x", swap=SwapProgress("rollback", NOW, "tok")),
        obs(sl=slots(production=RID, swap=SwapState(SwapStatus.FAILED, "boom"))),
        1,
        Phase.FAILED,
        ["Alert"],
    ),
    (
        "a rollback that cannot finish by the deadline fails loudly",
        rel(phase=Phase.ROLLING_BACK, reason="x", weight=10),
        obs(sl=slots(staging=RID, weight=10)),
        31,
        Phase.FAILED,
        ["Alert"],
    ),
]


@pytest.mark.parametrize(
    ("release", "observation", "minutes", "phase", "effects"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(release, observation, minutes, phase, effects):
    decision = decide(release, observation, NOW + timedelta(minutes=minutes))
    assert decision.release.phase is phase, [a.message for a in decision.audit]
    assert effect_types(decision) == effects
    if decision.release.phase is not release.phase:
        assert decision.audit, "every phase change is explained in the audit"


def test_deploying_asks_for_the_release_id_version_artifact_and_settings():
    decision = decide(rel(), obs(sl=slots()), NOW)
    (deploy,) = decision.effects
    assert isinstance(deploy, DeployToSlot)
    assert deploy.release_id == RID and deploy.version == "1.4.2"
    assert deploy.app_settings == {"FEATURE_CHECKOUT_V2": "on"}
    assert decision.release.deploy_attempts == 1


def test_the_first_step_is_saved_first_then_asks_for_exactly_its_weight():
    r = rel(phase=Phase.VALIDATING, validation=ValidationProgress(1, 1, 0))
    saved = decide(r, obs(sl=slots(staging=RID), checks=passing()), NOW)
    assert saved.effects == () and saved.again, "no traffic moves before the step is saved"
    assert saved.release.step == 0 and saved.release.weight == 10 and saved.release.reached_users
    applied = decide(saved.release, obs(sl=slots(staging=RID)), NOW)
    assert applied.effects == (SetWeight(10.0),)
    assert not applied.again


def test_a_rollback_decision_carries_the_measurements_that_triggered_it():
    decision = decide(shifting(), obs(sl=slots(staging=RID, weight=10), measurements=measured(canary_errors=40)), NOW)
    started = next(a for a in decision.audit if a.action == "rollback.started")
    assert "error rate 20.0%" in started.message
    assert started.details["analysis"]["providers"][0]["canaryErrors"] == 40
    assert decision.release.reason.startswith("analysis failed")


def test_manual_promotion_waits_for_approval_after_the_last_step():
    r = shifting(step=1)
    r = replace(r, spec=replace(r.spec, promotion=Promotion.MANUAL))
    decision = decide(r, obs(sl=slots(staging=RID, weight=50), measurements=measured()), NOW + timedelta(minutes=10))
    assert decision.release.phase is Phase.AWAITING_APPROVAL
    assert decision.release.gate is Gate.BEFORE_PROMOTION
    assert decision.release.weight == 50, "the canary keeps its weight while a person decides"


def test_approval_before_traffic_waits_after_validation_without_traffic():
    r = rel(event(approveBeforeTraffic=True), phase=Phase.VALIDATING, validation=ValidationProgress(1, 1, 0))
    decision = decide(r, obs(sl=slots(staging=RID), checks=passing()), NOW)
    assert decision.release.phase is Phase.AWAITING_APPROVAL
    assert decision.release.gate is Gate.BEFORE_TRAFFIC
    assert decision.effects == ()
    # Nothing to do until someone approves (which wakes it at once): only a slow watch for drift.
    assert decision.release.next_check_at == NOW + timedelta(hours=1)


def test_too_little_traffic_extends_the_bake_then_pauses_as_inconclusive():
    quiet = measured(canary_requests=3, stable_requests=30)
    d1 = decide(shifting(), obs(sl=slots(staging=RID, weight=10), measurements=quiet), NOW + timedelta(minutes=5))
    assert "bake.extended" in actions(d1)
    assert not d1.release.paused
    d2 = decide(d1.release, obs(sl=slots(staging=RID, weight=10), measurements=quiet), NOW + timedelta(minutes=16))
    assert d2.release.paused and d2.release.inconclusive
    assert d2.release.phase is Phase.SHIFTING and d2.release.step == 0, "it never passes on missing data"
    assert [a.severity for a in d2.release.outbox] == ["warning"]


def test_an_incident_in_the_stable_version_does_not_fail_a_canary_that_is_no_worse():
    incident = measured(canary_requests=200, canary_errors=20, stable_requests=2000, stable_errors=300)
    decision = decide(shifting(), obs(sl=slots(staging=RID, weight=10), measurements=incident), NOW)
    assert decision.release.phase is Phase.SHIFTING
    assert decision.release.analysis.last_outcome == "pass"


def test_weight_drift_during_a_bake_is_reported_and_corrected():
    decision = decide(shifting(), obs(sl=slots(staging=RID, weight=0), measurements=measured()), NOW)
    assert decision.effects == (SetWeight(10.0),)
    assert "weight.drift" in actions(decision)


def test_guarding_succeeds_after_the_guard_window_with_healthy_evidence():
    r = rel(BLUE_GREEN_EVENT, phase=Phase.GUARDING, analysis=AnalysisProgress(last_outcome="pass", successes=3))
    decision = decide(r, obs(sl=slots(production="api-2.0.0"), measurements=measured()), NOW + timedelta(minutes=10))
    assert decision.release.phase is Phase.SUCCEEDED


def test_a_regression_while_guarding_swaps_back():
    r = rel(BLUE_GREEN_EVENT, phase=Phase.GUARDING)
    bad = obs(sl=slots(production="api-2.0.0"), measurements=measured(canary_errors=50))
    decision = decide(r, bad, NOW)
    assert decision.release.phase is Phase.ROLLING_BACK
    assert effect_types(decision) == ["BeginSwap"], "the swap back is claimed; the service starts it once saved"
    assert decision.release.swap is not None and decision.release.swap.purpose == "rollback"
    assert decision.release.swap.token is None


def test_guarding_a_release_that_is_no_longer_in_production_rolls_back():
    r = rel(BLUE_GREEN_EVENT, phase=Phase.GUARDING)
    decision = decide(r, obs(sl=slots(production=OLD)), NOW)
    assert decision.release.phase is Phase.ROLLED_BACK
    assert "outside the controller" in decision.release.reason


def test_final_releases_absorb_every_observation():
    for phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.CANCELLED):
        r = rel(phase=phase)
        decision = decide(r, obs(sl=slots(production=RID, weight=30)), NOW)
        assert decision.release.phase is phase and decision.effects == () and decision.audit == ()


def test_a_terminal_platform_failure_takes_the_rollback_path():
    decision = machine.terminal_failure(shifting(), "403 Forbidden: grant Website Contributor", NOW)
    assert decision.release.phase is Phase.ROLLING_BACK
    assert "Website Contributor" in decision.release.reason


def test_a_terminal_failure_during_rollback_fails_with_an_alert():
    decision = machine.terminal_failure(rel(phase=Phase.ROLLING_BACK), "404 site not found", NOW)
    assert decision.release.phase is Phase.FAILED
    assert [a.severity for a in decision.release.outbox] == ["error"]
    assert decision.release.holds_site, "a failed release keeps its site until it is seen clean"


def test_a_transient_failure_keeps_the_state_and_counts_the_attempt():
    r = shifting()
    first = machine.transient_failure(r, "429 Too Many Requests", NOW)
    second = machine.transient_failure(first.release, "429 Too Many Requests", NOW)
    assert second.release.phase is r.phase and second.release.weight == r.weight
    assert second.release.transient_failures == 2
    assert "attempt 2" in second.audit[0].message
    assert second.release.next_check_at > NOW


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------


def override(kind, actor="bob@contoso.com", reason="because"):
    return Override(OverrideKind(kind), person(actor), reason)


OVERRIDE_CASES = [
    ("pause holds a shifting release in place", shifting(), "pause", Phase.SHIFTING, True),
    ("resume lets a paused release go on", shifting(paused=True), "resume", Phase.SHIFTING, False),
    ("promote skips the rest of the current bake to the next step", shifting(), "promote", Phase.SHIFTING, False),
    ("promote on the last step goes to the swap", shifting(step=1), "promote", Phase.PROMOTING, False),
    ("promote-full skips the remaining steps", shifting(), "promote-full", Phase.PROMOTING, False),
    ("promote ends a guard window early", rel(phase=Phase.GUARDING), "promote", Phase.SUCCEEDED, False),
    (
        "approve before traffic starts the first step",
        rel(phase=Phase.AWAITING_APPROVAL, gate=Gate.BEFORE_TRAFFIC),
        "approve",
        Phase.SHIFTING,
        False,
    ),
    (
        "approve before promotion starts the swap",
        rel(phase=Phase.AWAITING_APPROVAL, gate=Gate.BEFORE_PROMOTION, weight=50.0, step=1),
        "approve",
        Phase.PROMOTING,
        False,
    ),
    ("rollback of a shifting release starts rolling back", shifting(), "rollback", Phase.ROLLING_BACK, False),
    ("rollback of a pending release cancels it", rel(), "rollback", Phase.CANCELLED, False),
    (
        "promote clears an inconclusive pause",
        shifting(paused=True, inconclusive=True),
        "promote",
        Phase.SHIFTING,
        False,
    ),
]


@pytest.mark.parametrize(
    ("release", "kind", "phase", "paused"), [c[1:] for c in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES]
)
def test_override(release, kind, phase, paused):
    decision = apply_override(release, override(kind), NOW)
    assert decision.release.phase is phase
    assert decision.release.paused is paused
    assert decision.audit[0].actor == person("bob@contoso.com").label
    assert "because" in decision.audit[0].message
    assert decision.effects == (), "overrides never call Azure"


REFUSALS = [
    ("approve when nothing waits for approval", shifting(), "approve", "nothing is waiting"),
    ("pause twice", shifting(paused=True), "pause", "already paused"),
    ("resume when not paused", shifting(), "resume", "not paused"),
    ("pause a rollback", rel(phase=Phase.ROLLING_BACK), "pause", "cannot be paused"),
    ("rollback a rollback", rel(phase=Phase.ROLLING_BACK), "rollback", "already rolling back"),
    ("promote during validation", rel(phase=Phase.VALIDATING), "promote", "validating"),
    ("promote-full during deployment", rel(phase=Phase.DEPLOYING), "promote-full", "deployed and validated"),
    (
        "promote while awaiting approval",
        rel(phase=Phase.AWAITING_APPROVAL, gate=Gate.BEFORE_TRAFFIC),
        "promote",
        "use approve",
    ),
    ("anything on a succeeded release", rel(phase=Phase.SUCCEEDED), "rollback", "final"),
    ("retry a release that did not fail", rel(phase=Phase.SUCCEEDED), "retry", "only a failed or rolled-back"),
    ("retry twice", rel(phase=Phase.FAILED, retried_as="x-retry1"), "retry", "already retried"),
]


@pytest.mark.parametrize(("release", "kind", "why"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_refused_override(release, kind, why):
    with pytest.raises(OverrideRefused) as caught:
        if kind == "retry":
            plan_retry(release, override(kind), f"{release.id}-retry1", NOW)
        else:
            apply_override(release, override(kind), NOW)
    assert why in caught.value.reason


def test_retry_makes_a_linked_release_with_the_same_plan_and_leaves_the_old_one_final():
    old = rel(phase=Phase.ROLLED_BACK)
    created, old_decision = plan_retry(old, override("retry"), f"{RID}-retry1", NOW)
    assert created.release.id == f"{RID}-retry1"
    assert created.release.spec.retry_of == RID
    assert replace(created.release.spec, release_id=RID, retry_of=None) == old.spec
    assert old_decision.release.phase is Phase.ROLLED_BACK
    assert old_decision.release.retried_as == f"{RID}-retry1"


def test_retry_ids_count_up_instead_of_nesting():
    assert machine.retry_release_ids("web-retry1")[:2] == ["web-retry2", "web-retry3"]
    assert machine.retry_release_ids("web")[0] == "web-retry1"
    assert all(len(i) == 128 for i in machine.retry_release_ids("x" * 128))
    assert machine.retry_release_ids("web-retry1\n")[0] == "web-retry1\n-retry1", "only a real suffix counts"


# ---------------------------------------------------------------------------------------------
# Arrival and departure on a site
# ---------------------------------------------------------------------------------------------


def arriving(release_id="web-1.4.3"):
    return new_release(spec(event(releaseId=release_id, version="1.4.3")), NOW, actor="ci", source="test")


def test_a_release_on_a_free_site_becomes_active():
    admission = admit(site(active=None), arriving(), None, None, NOW)
    assert admission.site.active == "web-1.4.3"
    assert len(admission.decisions) == 1


def test_a_newer_release_supersedes_one_that_has_not_reached_users():
    busy = rel(phase=Phase.VALIDATING)
    admission = admit(site(), arriving(), busy, None, NOW)
    _, cancelled = admission.decisions
    assert admission.site.active == "web-1.4.3"
    assert cancelled.release.phase is Phase.CANCELLED
    assert cancelled.release.superseded_by == "web-1.4.3"


def test_a_newer_release_queues_behind_one_that_has_reached_users():
    admission = admit(site(), arriving(), shifting(), None, NOW)
    assert admission.site.active == RID and admission.site.queued == "web-1.4.3"
    assert [a.action for a in admission.decisions[0].audit] == ["release.created", "release.queued"]


def test_a_newer_release_replaces_an_older_one_in_the_queue():
    queued = rel(event(releaseId="web-1.4.3", version="1.4.3"))
    admission = admit(replace(site(), queued="web-1.4.3"), arriving("web-1.4.4"), shifting(), queued, NOW)
    assert admission.site.queued == "web-1.4.4"
    assert admission.decisions[1].release.phase is Phase.CANCELLED


def test_a_finished_release_hands_the_site_to_the_queue_and_records_the_last_good():
    done = rel(phase=Phase.SUCCEEDED)
    after = site_after(replace(site(), queued="web-1.4.3"), done)
    assert after.active == "web-1.4.3" and after.queued is None
    assert after.last_good.release_id == RID


def test_a_rolled_back_release_does_not_become_the_last_good():
    good = LastGood(OLD, "1.4.1", spec().artifact)
    after = site_after(site(last_good=good), rel(phase=Phase.ROLLED_BACK))
    assert after.active is None and after.last_good == good


def test_restore_staging_uses_the_last_good_release():
    good = LastGood(OLD, "1.4.1", spec().artifact, {"A": "1"})
    decision = decide(
        rel(phase=Phase.ROLLING_BACK, reason="bad"), obs(sl=slots(staging=RID), site_state=site(last_good=good)), NOW
    )
    assert RestoreStaging(good) in decision.effects
    assert BeginSwap("rollback") not in decision.effects


GATED = event(
    analysis={
        "providers": [
            {"type": "http"},
            {"type": "webhook", "gate": "gate", "stages": ["beforeTraffic", "eachStep"]},
        ]
    }
)


def gate_says(answer, stage):
    from shared.domain.model import GateResult, WebhookStage

    return (GateResult(ProviderKind.WEBHOOK, answer, f"answered {200 if answer else 500}", WebhookStage(stage)),)


def test_a_webhook_gate_is_asked_after_validation_and_its_yes_lets_traffic_in():
    r = rel(GATED, phase=Phase.VALIDATING, validation=ValidationProgress(1, 1, 0))
    asked = decide(r, obs(sl=slots(staging=RID), checks=passing()), NOW)
    assert asked.release.phase is Phase.VALIDATING and asked.release.gate_pending.value == "beforeTraffic"
    assert machine.needs(asked.release, site()).gate.value == "beforeTraffic"
    assert not machine.needs(asked.release, site()).checks, "no more smoke checks while the gate decides"
    passed = decide(asked.release, Observation(site(), slots(staging=RID), gates=gate_says(True, "beforeTraffic")), NOW)
    assert passed.release.phase is Phase.SHIFTING and passed.again, "the step is saved, then its weight applied"


def test_a_webhook_gate_that_says_no_rolls_back_with_its_answer():
    r = rel(
        GATED,
        phase=Phase.SHIFTING,
        step=0,
        weight=10.0,
        step_started_at=NOW - timedelta(minutes=6),
        analysis=AnalysisProgress(last_outcome="pass", successes=1),
    )
    asked = decide(r, obs(sl=slots(staging=RID, weight=10), measurements=measured()), NOW)
    assert asked.release.gate_pending.value == "eachStep" and asked.release.step == 0
    refused = decide(
        asked.release,
        Observation(site(), slots(staging=RID, weight=10), measurements=measured(), gates=gate_says(False, "eachStep")),
        NOW,
    )
    assert refused.release.phase is Phase.ROLLING_BACK
    assert "webhook gate (eachStep) said no: answered 500" in refused.release.reason
    assert effect_types(refused) == ["SetWeight"]


def test_a_before_promotion_gate_is_asked_right_before_the_swap_even_after_a_person_approved():
    doc = event(
        promotion="manual",
        analysis={"providers": [{"type": "http"}, {"type": "webhook", "gate": "gate", "stages": ["beforePromotion"]}]},
    )
    waiting = rel(doc, phase=Phase.AWAITING_APPROVAL, gate=Gate.BEFORE_PROMOTION, step=1, weight=50.0)
    approved = apply_override(waiting, Override(OverrideKind.APPROVE, person("pat"), "go"), NOW)
    asked = decide(approved.release, obs(sl=slots(staging=RID, weight=50)), NOW)
    assert asked.release.phase is Phase.PROMOTING and asked.effects == ()
    assert asked.release.gate_pending.value == "beforePromotion"
    swap = decide(
        asked.release, Observation(site(), slots(staging=RID, weight=50), gates=gate_says(True, "beforePromotion")), NOW
    )
    assert effect_types(swap) == ["SetWeight", "BeginSwap"]
