"""Advisory analysis on the emulator: a release whose new version fails its analysis runs its plan
to the end while the controller records, with the numbers, what it would have done. The policy, not
the event, decides whether a site may run advisory."""

from __future__ import annotations

from shared.domain.model import Phase
from tests.builders import authority_for_tests, body, ingest, policy_for_tests
from tests.e2e.conftest import SITE, bad_canary_event, build_e2e


def advisory_event(mode="advisory"):
    doc = bad_canary_event()
    if mode:
        doc["analysis"]["mode"] = mode
    return doc


def test_an_advisory_release_records_what_it_would_have_done_and_runs_its_plan(emulator, table_store, clock):
    e2e = build_e2e(
        emulator, table_store, clock, authority=authority_for_tests(policy_for_tests(analysis_mode="either"))
    )
    try:
        release_id = e2e.submit(advisory_event())
        e2e.until(release_id, lambda r: r.is_final, seconds=60)
    finally:
        e2e.http.close()
    assert e2e.phase(release_id) is Phase.SUCCEEDED, "advisory analysis never acts"
    assert emulator.site(SITE).production.settings["RELEASE_ID"] == release_id
    audit = [a.entry for a in e2e.service.audit(release_id)]
    advice = [a for a in audit if a.action == "advisory"]
    assert [a.details["would"] for a in advice] == ["roll back", "roll back"], "once per step"
    assert all("error rate" in a.message and a.details["analysis"]["providers"][0]["canaryErrors"] > 0 for a in advice)
    assert not any(a.action.startswith("rollback") for a in audit)
    release, kept = e2e.service.measurements(release_id)
    assert release.verdicts and dict(release.verdicts).get("fail", 0) == len(kept)
    assert release.spec.analysis.advisory


def test_the_policy_decides_whether_a_site_may_run_advisory(emulator, table_store, clock):
    enforced = build_e2e(emulator, table_store, clock)
    refused = ingest(enforced.service, body(advisory_event()), message_id=None, source="e2e")
    assert refused.outcome == "rejected" and refused.refusal == "forbidden"
    assert ("analysis.mode", "advisory analysis is not allowed on this site (policy rule tests enforces it)") in (
        refused.errors
    )
    enforced.http.close()

    by_policy = build_e2e(
        emulator, table_store, clock, authority=authority_for_tests(policy_for_tests(analysis_mode="advisory"))
    )
    try:
        created = ingest(by_policy.service, body(advisory_event(mode=None)), message_id=None, source="e2e")
        assert created.outcome == "created"
        release = created.release
        assert release.spec.analysis.advisory
        assert any("analysis made advisory" in change for change in release.policy.changes)
    finally:
        by_policy.http.close()
