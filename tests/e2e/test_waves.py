"""Rollouts on the emulator: one release over three emulated sites in two waves. Each site's release
runs its own canary with its own analysis; the rollout only starts them wave by wave."""

from __future__ import annotations

import json

import pytest

from devstack.appservice import AppServiceEmulator
from shared.domain.model import Phase
from tests.builders import SUBSCRIPTION, authority_for_tests, body, policy_for_tests, signed
from tests.e2e.conftest import RG, build_e2e, canary_event, emulator_config, sites_named

SITES = {"web-weu": "westeurope", "web-neu": "northeurope", "web-eus": "eastus"}


@pytest.fixture
def fleet(clock):
    with AppServiceEmulator(emulator_config(clock, sites=sites_named(list(SITES)))) as running:
        yield running


def rollout_event(rollout_id="web-2.0.0", version="2.0.0"):
    doc = canary_event(version=version, steps=(20, 50))
    for key in ("releaseId", "target"):
        doc.pop(key)
    doc["rolloutId"] = rollout_id
    doc["targets"] = [
        {"subscriptionId": SUBSCRIPTION, "resourceGroup": RG, "site": site, "region": region}
        for site, region in SITES.items()
    ]
    doc["waves"] = [{"sites": ["web-weu"], "bake": "10m"}, {"sites": ["web-neu", "web-eus"], "maxInFlight": 2}]
    return doc


def run(e2e, rollout_id, *, rounds=120):
    """Minute after minute: every due release is reconciled, then the rollouts (as the timer does)."""
    for _ in range(rounds):
        rollout = e2e.service.get_rollout(rollout_id)
        if rollout.is_final:
            return rollout
        e2e.clock.advance(60)
        e2e.service.reconcile_due(budget_seconds=60, concurrency=2)
        e2e.service.reconcile_rollouts()
    raise AssertionError(f"{rollout_id} still {e2e.service.get_rollout(rollout_id).phase}")


def submit(e2e, doc):
    raw = body(doc)
    result = e2e.service.ingest_rollout(raw, message_id=None, source="e2e", proof=signed(raw))
    assert result.outcome == "created", result.reason
    return result.rollout


def test_a_two_wave_release_over_three_sites_succeeds_wave_by_wave(fleet, table_store, clock):
    e2e = build_e2e(fleet, table_store, clock)
    try:
        first = submit(e2e, rollout_event())
        assert [r.state for r in first.runs] == ["running", "waiting", "waiting"], "wave 1 starts alone"
        done = run(e2e, first.id)
    finally:
        e2e.http.close()
    assert done.phase == "succeeded" and all(r.state == "succeeded" for r in done.runs)
    for site in SITES:
        assert fleet.site(site).production.settings["RELEASE_VERSION"] == "2.0.0"
    started = {e.details["site"]: e.at for e in done.log if e.action == "site.started"}
    wave_one_done = next(e.at for e in done.log if e.action == "wave.completed")
    assert started["web-neu"] >= wave_one_done and (started["web-neu"] - wave_one_done).total_seconds() >= 600
    assert started["web-neu"] == started["web-eus"], "wave 2 runs its two sites at once"
    for site in SITES:  # each site ran the full per-site pipeline
        actions = [a.entry.action for a in e2e.service.audit(f"web-2.0.0:{site}")]
        assert {"validation.passed", "step.started", "analysis.passed", "succeeded"} <= set(actions)


@pytest.mark.parametrize("on_failure", ["keep", "rollbackAll"])
def test_a_failure_in_wave_two_stops_the_rollout_rolls_that_site_back_and_wave_one_goes_by_policy(
    fleet, table_store, clock, on_failure
):
    fleet.site("web-eus").failing_versions["2.0.0"] = 0.6
    policy = policy_for_tests(rollout_on_failure=on_failure)
    e2e = build_e2e(fleet, table_store, clock, authority=authority_for_tests(policy))
    try:
        # Every site first runs 1.5.0, the release a revert goes back to.
        base = submit(e2e, rollout_event("web-1.5.0", "1.5.0"))
        assert run(e2e, base.id).phase == "succeeded"
        rollout = run(e2e, submit(e2e, rollout_event()).id)
    finally:
        e2e.http.close()
    states = {r.site: r.state for r in rollout.runs}
    assert states["web-eus"] == "failed" and "error rate" in rollout.run("web-eus").outcome
    assert e2e.service.get("web-2.0.0:web-eus").phase is Phase.ROLLED_BACK
    assert fleet.site("web-eus").production.settings["RELEASE_VERSION"] == "1.5.0"
    if on_failure == "keep":
        assert rollout.phase == "stopped"
        assert states["web-weu"] == "succeeded"
        assert fleet.site("web-weu").production.settings["RELEASE_VERSION"] == "2.0.0", "wave one keeps it"
    else:
        assert rollout.phase == "rolledBack"
        assert states["web-weu"] == "reverted"
        assert fleet.site("web-weu").production.settings["RELEASE_VERSION"] == "1.5.0", "wave one goes back"
        revert = e2e.service.get(rollout.run("web-weu").revert_id)
        assert revert.phase is Phase.SUCCEEDED and revert.spec.version == "1.5.0"
    # web-neu ran beside web-eus in wave two: by policy it was kept, or rolled back and reverted.
    assert states["web-neu"] in (("succeeded",) if on_failure == "keep" else ("failed", "reverted"))


def test_paired_regions_in_one_wave_are_refused_and_bad_waves_are_named(fleet, table_store, clock):
    e2e = build_e2e(fleet, table_store, clock)
    try:
        doc = rollout_event()
        doc["waves"] = [{"sites": ["web-weu", "web-neu"]}, {"sites": ["web-eus"]}]
        raw = body(doc)
        refused = e2e.service.ingest_rollout(raw, message_id=None, source="e2e", proof=signed(raw))
        assert refused.outcome == "rejected" and refused.refusal == "forbidden"
        assert refused.errors[0][0] == "waves[0].sites" and "paired Azure regions" in refused.errors[0][1]
        doc["waves"] = [{"sites": ["web-weu", "web-nope"]}]
        raw = json.dumps(doc).encode()
        invalid = e2e.service.ingest_rollout(raw, message_id=None, source="e2e", proof=signed(raw))
        assert invalid.refusal == "invalid"
        assert {f for f, _ in invalid.errors} == {"waves[0].sites", "waves"}
    finally:
        e2e.http.close()
