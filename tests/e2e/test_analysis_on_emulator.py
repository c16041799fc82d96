"""Analysis and automatic rollback on the emulator, in real time, with visitors on the production
host name: decisions on evidence, explained with numbers, never a pass on missing data."""

from __future__ import annotations

import time

import pytest

from devstack.traffic import Visitors
from shared.adapters.analysis import ProviderAnalyzer
from shared.domain.model import Phase
from shared.settings import Settings
from tests.builders import authority_for_tests, body, ingest, policy_for_tests
from tests.e2e.conftest import SITE, build_e2e, canary_event, make_platform
from tests.e2e.gates import SECRET, SECRET_SETTING, Gate, webhook

# Each round moves the shared clock this far, while real visitors keep hitting the emulator.
ROUND_SECONDS = 20
ROUND_PAUSE = 0.25


@pytest.fixture
def live(emulator, table_store, azurite, clock):
    """The controller as deployed (all three providers), against Azure's timings: swaps of 90 s,
    30 s restarts, platform metrics in whole minutes that arrive three minutes late."""
    platform = make_platform(emulator)
    settings = Settings.from_env(
        {
            "RELEASE_STORE_CONNECTION": azurite.connection_string,
            "PROBE_CA_BUNDLE": emulator.ca_file,
            SECRET_SETTING: SECRET,
        }
    )
    built = build_e2e(
        emulator, table_store, clock, analyzer=ProviderAnalyzer.from_settings(settings, platform), platform=platform
    )
    built.http.close()
    service, notifier = built.service, built.notifier
    service.rounds = lambda: clock.advance(ROUND_SECONDS)  # type: ignore[attr-defined]
    return service, notifier


def live_event(version, *, settings=None, steps=(10, 50), providers=None, guard=0, **analysis):
    rules = {"minRequests": 20, "maxBakeExtension": "5m", "maxErrorRate": 0.05, "maxLatencyMs": 300}
    rules.update(analysis)
    doc = canary_event(
        release_id=f"web-{version}",
        version=version,
        settings={
            "EMULATOR_ERROR_RATE": "0",
            "EMULATOR_LATENCY_MS": "0",
            "EMULATOR_HEALTH_STATUS": "200",
            **(settings or {}),
        },
        steps=steps,
    )
    doc["strategy"] = {"type": "canary", "steps": [{"weight": w, "bake": "6m"} for w in steps], "guard": guard}
    doc["validation"] = {
        "checks": [{"path": "/healthz", "expectStatus": 200}],
        "consecutiveSuccesses": 1,
        "failureLimit": 2,
    }
    doc["analysis"] = {"providers": providers or [{"type": "azureMonitor"}], **rules}
    return doc


def run(service, doc, *, until=lambda r: r.is_final, minutes=60):
    result = ingest(service, body(doc), message_id=None, source="e2e")
    assert result.outcome == "created", result.reason
    return run_existing(service, result.release.id, until=until, minutes=minutes)


def run_existing(service, release_id, *, until=lambda r: r.is_final, minutes=60):
    """Round after round: the clock moves on, real visitors keep coming, the controller reconciles."""
    for _ in range(minutes * 60 // ROUND_SECONDS):
        service.reconcile(release_id, force=True)
        release = service.get(release_id)
        if until(release):
            return release
        time.sleep(ROUND_PAUSE)
        service.rounds()
    release = service.get(release_id)
    raise AssertionError(f"{release_id} still {release.phase} after {minutes} minutes ({release.reason})")


def visitors_for(emulator, **kw):
    return Visitors(
        f"https://{emulator.site(SITE).front_door_host}/", emulator.ca_file, rate_per_second=300, workers=4, **kw
    )


def actions(service, release_id):
    return [a.entry for a in service.audit(release_id)]


def test_a_healthy_release_is_promoted_through_every_step(live, emulator):
    service, _ = live
    with visitors_for(emulator):
        release = run(service, live_event("1.1.0", guard="4m"))
    assert release.phase is Phase.SUCCEEDED
    completed = [a for a in actions(service, release.id) if a.action == "step.completed"]
    assert len(completed) == 2
    assert all(e["canaryRequests"] >= 20 for a in completed for e in a.details["evidence"])


def test_a_release_with_20_percent_errors_is_rolled_back_at_its_first_step(live, emulator):
    service, notifier = live
    site = emulator.site(SITE)
    with visitors_for(emulator) as visitors:
        release = run(service, live_event("1.2.0", settings={"EMULATOR_ERROR_RATE": "0.2"}))
    assert release.phase is Phase.ROLLED_BACK
    assert "error rate" in release.reason
    entries = actions(service, release.id)
    assert max(a.weight for a in entries) == 10, "it never went past its first step"
    started = next(a for a in entries if a.action == "rollback.started")
    numbers = started.details["analysis"]["providers"][0]
    # Judged as soon as the evidence is conclusive: enough requests, or errors so many that even the
    # low end of the 95% interval of the error rate is above the limit.
    assert numbers["canaryErrors"] > 0
    assert numbers["canaryRequests"] >= 20 or numbers["canaryErrorRateLowerBound"] > numbers["maxErrorRate"]
    reached = site.visits_by_release["web-1.2.0"]
    total = sum(visitors.seen().values())
    assert reached / total <= 0.10, f"{reached} of {total} visits reached the bad build"
    assert any("rolled back" in m for _, _, m in notifier.sent)


def test_a_release_500_ms_slower_is_rolled_back_by_the_latency_rule(live, emulator):
    service, _ = live
    with visitors_for(emulator):
        release = run(service, live_event("1.3.0", settings={"EMULATOR_LATENCY_MS": "500"}, minRequests=10))
    assert release.phase is Phase.ROLLED_BACK
    assert "latency" in release.reason and "above the limit 300 ms" in release.reason


def test_a_release_that_fails_its_smoke_check_never_receives_user_traffic(live, emulator):
    service, _ = live
    with visitors_for(emulator) as visitors:
        release = run(service, live_event("1.4.0", settings={"EMULATOR_HEALTH_STATUS": "503"}))
    assert release.phase is Phase.ROLLED_BACK
    assert "validation failed" in release.reason and "expected 200, got HTTP 503" in release.reason
    assert emulator.site(SITE).visits_by_release["web-1.4.0"] == 0
    assert sum(visitors.seen().values()) > 0
    assert all(a.weight == 0 for a in actions(service, release.id))


def test_with_no_traffic_at_all_the_release_pauses_as_inconclusive_instead_of_passing(live):
    service, notifier = live
    release = run(service, live_event("1.5.0"), until=lambda r: r.paused)
    assert release.phase is Phase.SHIFTING and release.step == 0 and release.inconclusive
    entries = actions(service, release.id)
    assert [a.action for a in entries][-2:] == ["paused.inconclusive", "alert.sent"]
    assert "bake.extended" in [a.action for a in entries]
    assert entries[-2].details["evidence"][0]["canaryRequests"] < 20, "too little to judge (the smoke checks at most)"
    assert any("paused" in m for _, severity, m in notifier.sent if severity == "warning")


@pytest.mark.parametrize("relative", [True, False])
def test_an_incident_in_the_stable_version_does_not_roll_back_a_canary_that_is_no_worse(live, emulator, relative):
    """A shared dependency fails: production errs at 30%, the canary at 15%. Judged against the
    stable version the canary is not to blame; judged on absolute numbers alone it would be."""
    service, _ = live
    emulator.site(SITE).production.settings["EMULATOR_ERROR_RATE"] = "0.3"
    with visitors_for(emulator):
        release = run(
            service,
            live_event(
                "1.6.0",
                settings={"EMULATOR_ERROR_RATE": "0.15"},
                steps=(50,),
                relativeToStable=relative,
                maxErrorRateIncrease=0.05,
                minRequests=100,
            ),
        )
    if relative:
        assert release.phase is Phase.SUCCEEDED, release.reason
    else:
        assert release.phase is Phase.ROLLED_BACK and "error rate" in release.reason


def test_after_a_rollback_visitors_pinned_to_the_slot_land_on_the_last_good_release(live, emulator):
    service, _ = live
    with visitors_for(emulator):
        assert run(service, live_event("1.1.0")).phase is Phase.SUCCEEDED
    pinned = Visitors(
        f"https://{emulator.site(SITE).front_door_host}/?x-ms-routing-name=staging",
        emulator.ca_file,
        rate_per_second=20,
        sticky=True,
    )
    with visitors_for(emulator), pinned:
        release = run(service, live_event("1.2.0", settings={"EMULATOR_ERROR_RATE": "0.3"}))
        assert release.phase is Phase.ROLLED_BACK
        time.sleep(0.5)
        before = pinned.take()
        time.sleep(1.0)
        after = pinned.take()
    assert "1.2.0" in before or "HTTP 500" in before or "1.1.0" in before
    # The rollback removed the slot's routing rule: the pinned cookie no longer reaches the slot, so
    # they are served by production (the last good release) at once.
    assert set(after) == {"1.1.0"}, f"pinned visitors after the rollback saw {after}"
    assert "staging.restored" in [a.action for a in actions(service, release.id)]


def test_a_regression_after_the_swap_is_swapped_back_within_the_guard_window(live, emulator):
    service, _ = live
    doc = live_event("2.0.0", settings={"EMULATOR_ERROR_RATE": "0"})
    doc["strategy"] = {"type": "blueGreen", "guard": "10m"}
    with visitors_for(emulator):
        release = run(service, doc, until=lambda r: r.phase is Phase.GUARDING)
        emulator.site(SITE).production.settings["EMULATOR_ERROR_RATE"] = "0.4"  # it breaks under real load
        release = run_existing(service, release.id)
    assert release.phase is Phase.ROLLED_BACK
    entries = [a.action for a in actions(service, release.id)]
    assert entries.index("rollback.started") < entries.index("rollback.swapBack")
    assert emulator.site(SITE).production.settings["RELEASE_ID"] == "web-1.0.0"


def gated(service, gate):
    """The policy names the gate (events only refer to it by name)."""
    service.authority = authority_for_tests(policy_for_tests(gates={"gate": gate.named()}))


def test_a_webhook_gate_is_asked_signed_at_every_stage_and_its_no_rolls_back(live, emulator):
    service, _ = live
    gate = Gate(emulator.tls, {"beforePromotion": (409, b'{"reason": "change freeze\\u0007 in force"}')})
    gated(service, gate)
    try:
        with visitors_for(emulator):
            release = run(service, live_event("1.7.0", providers=[{"type": "azureMonitor"}, webhook()]))
    finally:
        gate.close()
    assert [stage for stage, _ in gate.calls] == ["beforeTraffic", "eachStep", "eachStep", "beforePromotion"]
    assert all(signed for _, signed in gate.calls)
    assert release.phase is Phase.ROLLED_BACK
    assert "webhook gate (beforePromotion) said no" in release.reason and "409" in release.reason
    assert "change freeze  in force" in release.reason, "only a cleaned-up reason from the answer is kept"


def test_a_webhook_gate_that_does_not_answer_in_time_fails(live, emulator):
    service, _ = live
    gate = Gate(emulator.tls, {"beforeTraffic": "slow"})
    gated(service, gate)
    try:
        release = run(service, live_event("1.8.0", providers=[{"type": "azureMonitor"}, webhook("1s")]))
    finally:
        gate.close()
    assert release.phase is Phase.ROLLED_BACK
    assert "did not answer within 1s" in release.reason
    assert emulator.site(SITE).visits_by_release["web-1.8.0"] == 0
