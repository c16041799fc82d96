"""When a release next needs attention: the due times decide() sets, and where the timer finds it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.lifecycle import attention_at, next_due
from shared.domain.lifecycle.schedule import (
    ALERT_RETRY_SECONDS,
    APPROVAL_WATCH_SECONDS,
    FAILED_WATCH_SECONDS,
    POLL_SECONDS,
    QUEUED_WATCH_SECONDS,
    VERIFY_SECONDS,
)
from shared.domain.model import Alert, AnalysisProgress, Phase, Release, WebhookStage
from shared.domain.schema import SchemaError, parse_release_event, spec_fingerprint, spec_to_document
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, body, event, spec

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def rel(doc=None, **state) -> Release:
    state.setdefault("phase_since", NOW - timedelta(minutes=1))
    return Release(spec=spec(doc if doc is not None else CANARY_EVENT), created_at=NOW - timedelta(minutes=2), **state)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def test_a_baking_step_is_due_at_its_next_analysis_not_at_every_tick():
    baking = rel(phase=Phase.SHIFTING, step=0, weight=10, step_started_at=NOW - timedelta(minutes=1))
    assert next_due(baking, NOW) == at(60), "analysis.interval defaults to 60 s"
    quick = rel(
        event(analysis={"interval": "15s"}),
        phase=Phase.SHIFTING,
        step=0,
        weight=10,
        step_started_at=NOW - timedelta(seconds=30),
    )
    assert next_due(quick, NOW) == at(15)


def test_a_step_just_verified_is_measured_soon_then_at_every_interval():
    verified = rel(phase=Phase.SHIFTING, step=0, weight=10, step_started_at=NOW)
    assert next_due(verified, NOW) == at(VERIFY_SECONDS)
    assert next_due(verified, at(VERIFY_SECONDS)) == at(VERIFY_SECONDS + 60)


def test_the_end_of_a_bake_comes_before_the_next_analysis_when_it_is_sooner():
    # step 1 bakes 5 minutes from 4m30s ago: it ends in 30 s, before the next analysis in 60 s
    ending = rel(phase=Phase.SHIFTING, step=0, weight=10, step_started_at=NOW - timedelta(minutes=4, seconds=30))
    assert next_due(ending, NOW) == at(30)
    over = rel(phase=Phase.SHIFTING, step=0, weight=10, step_started_at=NOW - timedelta(minutes=6))
    assert next_due(over, NOW) == at(60), "a bake already over waits for its verdict at the analysis interval"


def test_a_bake_extension_and_the_guard_window_end_are_due_times_too():
    extended = rel(
        phase=Phase.SHIFTING,
        step=0,
        weight=10,
        step_started_at=NOW - timedelta(minutes=6),
        analysis=AnalysisProgress(extension_until=at(20)),
    )
    assert next_due(extended, NOW) == at(20)
    guarding = rel(BLUE_GREEN_EVENT, phase=Phase.GUARDING, phase_since=NOW - timedelta(minutes=9, seconds=50))
    assert next_due(guarding, NOW) == at(10)


@pytest.mark.parametrize("phase", [Phase.DEPLOYING, Phase.VALIDATING, Phase.PROMOTING, Phase.ROLLING_BACK])
def test_a_platform_operation_under_way_is_polled(phase):
    assert next_due(rel(phase=phase), NOW) == at(POLL_SECONDS)


def test_an_unverified_step_is_looked_at_soon_and_a_webhook_gate_is_polled():
    assert next_due(rel(phase=Phase.SHIFTING, step=0, weight=10), NOW) == at(VERIFY_SECONDS)
    gated = rel(phase=Phase.SHIFTING, step=0, weight=10, step_started_at=NOW, gate_pending=WebhookStage.EACH_STEP)
    assert next_due(gated, NOW) == at(POLL_SECONDS)


def test_what_only_a_person_or_another_release_moves_is_watched_slowly():
    assert next_due(rel(phase=Phase.PENDING), NOW) == at(QUEUED_WATCH_SECONDS)
    assert next_due(rel(phase=Phase.AWAITING_APPROVAL), NOW) == at(APPROVAL_WATCH_SECONDS)
    assert next_due(rel(phase=Phase.FAILED, holds_site=True), NOW) == at(FAILED_WATCH_SECONDS)
    assert next_due(rel(phase=Phase.SUCCEEDED), NOW) is None


def test_the_timer_finds_a_release_sooner_while_its_alerts_wait_and_never_once_settled():
    waiting = rel(phase=Phase.SHIFTING, next_check_at=at(600), updated_at=NOW)
    assert attention_at(waiting) == at(600)
    alert = Alert(1, "error", "failed", NOW)
    assert attention_at(replace(waiting, outbox=(alert,))) == at(ALERT_RETRY_SECONDS)
    done = rel(phase=Phase.ROLLED_BACK, updated_at=NOW)
    assert attention_at(done) is None
    assert attention_at(replace(done, outbox=(alert,))) == at(ALERT_RETRY_SECONDS), "final, alert not yet sent"


def test_analysis_interval_is_validated_and_kept_out_of_old_fingerprints():
    assert spec(event(analysis={"interval": "2m"})).analysis.interval_seconds == 120
    for bad in ("2h", 0, "0s"):
        with pytest.raises(SchemaError, match="interval"):
            parse_release_event(body(event(analysis={"interval": bad})))
    plain = spec()
    assert "interval" not in spec_to_document(plain)["analysis"], (
        "the default is not written: old plans keep their fingerprints"
    )
    assert spec_fingerprint(plain) == spec_fingerprint(spec(event(analysis={"interval": 60})))
    assert spec_fingerprint(plain) != spec_fingerprint(spec(event(analysis={"interval": 30})))


def test_a_short_analysis_interval_also_shortens_the_platform_polls():
    fast = rel(event(analysis={"interval": "5s"}), phase=Phase.DEPLOYING)
    assert next_due(fast, NOW) == at(5)
    assert next_due(rel(event(analysis={"interval": "5m"}), phase=Phase.DEPLOYING), NOW) == at(POLL_SECONDS)
