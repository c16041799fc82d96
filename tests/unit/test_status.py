"""What a release is doing, in plain words: every phase says what it waits for and until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.lifecycle import status
from shared.domain.model import (
    Alert,
    AnalysisProgress,
    ApprovalRule,
    EffectivePolicy,
    Evidence,
    Gate,
    Phase,
    ProviderKind,
    Release,
    Role,
    SiteState,
    SwapProgress,
    ValidationProgress,
    VersionStats,
)
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, spec

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def rel(doc=None, **state) -> Release:
    state.setdefault("phase_since", NOW)
    state.setdefault("next_check_at", NOW + timedelta(seconds=15))
    return Release(spec=spec(doc if doc is not None else CANARY_EVENT), created_at=NOW, **state)


def test_a_queued_release_names_the_release_it_waits_behind():
    queued = rel(phase=Phase.PENDING)
    now = status(queued, SiteState(queued.site_key, active="web-1.4.1", queued=queued.id))
    assert now.summary == "queued behind web-1.4.1; starts when the site is free"
    assert now.waiting_for == "site"


def test_a_baking_step_says_until_when_and_how_much_evidence_it_has():
    evidence = Evidence(ProviderKind.HTTP, canary=VersionStats(requests=41), stable=VersionStats(requests=400))
    baking = rel(
        phase=Phase.SHIFTING,
        step=1,
        weight=50,
        step_started_at=NOW - timedelta(minutes=4),
        analysis=AnalysisProgress(evidence=(evidence,), last_outcome="inconclusive"),
        next_check_at=NOW + timedelta(seconds=60),
    )
    now = status(baking)
    assert now.summary == (
        "baking step 2/2 (50%) until 14:06:00Z; 41 of 50 requests so far; last verdict: inconclusive; "
        "next analysis at 14:01:00Z"
    )
    assert (now.waiting_for, now.until) == ("bake", NOW + timedelta(minutes=6))


def test_an_approval_says_who_may_give_it():
    policy = EffectivePolicy("web", "d", before_promotion=ApprovalRule(Role.APPROVER, "release-managers"))
    waiting = rel(phase=Phase.AWAITING_APPROVAL, gate=Gate.BEFORE_PROMOTION, policy=policy, next_check_at=None)
    assert status(waiting).summary == (
        "waiting for approval by a person with the approver role in group release-managers, not one of its "
        "submitters (before the swap into production)"
    )
    assert status(waiting).waiting_for == "approval"


def test_each_phase_says_what_it_waits_for():
    cases = {
        "deploying": (rel(phase=Phase.DEPLOYING, deploy_attempts=1), "platform", "deploying version 1.4.2"),
        "validating": (
            rel(phase=Phase.VALIDATING, validation=ValidationProgress(rounds=1, streak=1)),
            "validation",
            "1 of 2 rounds passed in a row",
        ),
        "promoting": (
            rel(BLUE_GREEN_EVENT, phase=Phase.PROMOTING, swap=SwapProgress("promote", NOW, "token")),
            "platform",
            "swapping slot green into production (running since 14:00:00Z)",
        ),
        "guarding": (rel(BLUE_GREEN_EVENT, phase=Phase.GUARDING), "guard", "watching production until 14:10:00Z"),
        "paused": (rel(phase=Phase.SHIFTING, step=0, paused=True, pause_reason="not enough evidence"), "person", ""),
        "retrying": (rel(phase=Phase.DEPLOYING, transient_failures=3), "retry", "failed 3 time(s) in a row"),
        "failed, holding": (rel(phase=Phase.FAILED, holds_site=True, reason="swap back failed"), "person", "holds"),
    }
    for name, (release, waiting_for, words) in cases.items():
        now = status(release)
        assert now.waiting_for == waiting_for, name
        assert words in now.summary, (name, now.summary)


def test_a_finished_release_says_how_it_ended_and_waits_for_nothing():
    done = rel(phase=Phase.ROLLED_BACK, reason="error rate 20%", finished_at=NOW, next_check_at=None)
    assert status(done).summary == "rolled back at 14:00:00Z: error rate 20%"
    assert status(done).waiting_for is None
    alerting = rel(phase=Phase.SUCCEEDED, finished_at=NOW, outbox=(Alert(1, "warning", "x", NOW),))
    assert status(alerting).summary.startswith("succeeded at 14:00:00Z")


def test_the_new_versions_share_is_the_rule_until_the_swap_then_all_of_it():
    from shared.domain.lifecycle import new_version_share

    assert new_version_share(rel(phase=Phase.SHIFTING, step=0, weight=10)) == 10
    assert new_version_share(rel(BLUE_GREEN_EVENT, phase=Phase.GUARDING, weight=0)) == 100
    assert new_version_share(rel(phase=Phase.SUCCEEDED, weight=0)) == 100
    assert new_version_share(rel(phase=Phase.ROLLED_BACK, weight=0)) == 0
