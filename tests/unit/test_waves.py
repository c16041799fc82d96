"""The rollout's orchestration, as properties over random outcomes of its sites' releases, and its
crash safety in the service: whatever the sites do, waves go in order, never more sites in flight
than a wave allows, nothing starts after a failure, each site starts once, and the end agrees with
what happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.model import Phase
from shared.domain.waves import Child, FleetSite, RolloutSpec, Wave, decide_rollout, new_rollout, started
from tests.builders import spec

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@st.composite
def plans(draw):
    n = draw(st.integers(1, 6))
    names = [f"site{i}" for i in range(n)]
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    groups = [names[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    waves = tuple(Wave(tuple(g), draw(st.integers(1, 3)), draw(st.sampled_from([0, 300, 1800]))) for g in groups)
    on_failure = draw(st.sampled_from(["keep", "rollbackAll"]))
    sites = tuple(FleetSite(s, None, spec(releaseId=f"r:{s}"), None) for s in names)
    return RolloutSpec("r", "2.0.0", sites, waves, on_failure)


OUTCOMES = st.sampled_from([None, None, Phase.SUCCEEDED, Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED])
ENDINGS = st.sampled_from([Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED])


@settings(max_examples=300, deadline=None)
@given(plan=plans(), data=st.data())
def test_waves_go_in_order_within_their_limits_and_stop_on_a_failure(plan, data):
    r = new_rollout(plan, T0, actor="ci", source="test", submitters=())
    now, children, starts = T0, {}, []
    wave_of = {s: n for n, w in enumerate(plan.waves) for s in w.sites}
    for look in range(200):
        if r.is_final:
            break
        failed_before = any(run.state == "failed" for run in r.runs)
        decision = decide_rollout(r, children, now)
        r = decision.rollout
        for site in decision.start:
            assert not failed_before, "nothing starts after a failure"
            assert all(
                r.run(s).state == "succeeded" for n, w in enumerate(plan.waves) if n < wave_of[site] for s in w.sites
            )
            starts.append(site)
            r = started(r, site, f"old:{site}", now)
        current = plan.waves[r.wave]
        assert sum(1 for s in current.sites if r.run(s).state == "running") <= current.max_in_flight
        for release_id in decision.roll_back:
            if data.draw(st.booleans()):  # else the rollback comes too late: the release ends on its own
                children[release_id] = Child(Phase.ROLLED_BACK, "rollout stopped")
        # The sites' releases move on their own.
        for run in r.runs:
            rid = run.release_id if run.state == "running" else run.revert_id if run.state == "reverting" else None
            if rid and (rid not in children or not children[rid].phase.is_final):
                outcome = data.draw(OUTCOMES if look < 50 else ENDINGS)  # every release ends, in time
                if outcome is not None:
                    children[rid] = Child(outcome, "analysis failed" if outcome is not Phase.SUCCEEDED else None)
        now += timedelta(seconds=data.draw(st.sampled_from([30, 60, 600])))
    assert r.is_final, f"still {r.phase} after 200 looks"
    assert len(starts) == len(set(starts)), "each site starts once"
    states = {run.site: run.state for run in r.runs}
    if r.phase == "succeeded":
        assert set(states.values()) == {"succeeded"}
    else:
        assert "failed" in states.values() or "revertFailed" in states.values()
        assert r.phase == ("rolledBack" if plan.on_failure == "rollbackAll" else "stopped")
        if plan.on_failure == "rollbackAll":
            assert "succeeded" not in states.values(), "every site done went back, or could not"


def test_a_rollout_saved_after_a_crash_creates_each_site_release_once():
    from tests.builders import CANARY_EVENT, SUBSCRIPTION, body, harness, signed

    h = harness()
    doc = {k: v for k, v in CANARY_EVENT.items() if k not in ("releaseId", "target")}
    doc["rolloutId"] = "fleet-1"
    doc["targets"] = [
        {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "site": name} for name in ("web-one", "web-two")
    ]
    doc["waves"] = [{"sites": ["web-one", "web-two"], "maxInFlight": 2}]
    store = h.service.store
    real_save = store.save_rollout
    crashes = {"left": 1}

    def crashing_save(rollout, etag):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("worker died before saving the rollout")
        return real_save(rollout, etag)

    store.save_rollout = crashing_save
    raw = body(doc)
    with pytest.raises(RuntimeError):
        h.service.ingest_rollout(raw, message_id=None, source="test", proof=signed(raw))
    assert {r.id for r in [store.load_release(f"fleet-1:{s}").value for s in ("web-one", "web-two")]}
    rollout = h.service.reconcile_rollout("fleet-1")  # the timer's next look
    assert [run.state for run in rollout.runs] == ["running", "running"]
    page = h.service.list(limit=50)
    assert sorted(s.release_id for s in page.items) == ["fleet-1:web-one", "fleet-1:web-two"], "created once each"
