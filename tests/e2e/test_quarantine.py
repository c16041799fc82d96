"""Quarantine on the emulator: a version the analysis rolled back is refused on that site with the
rollback's reason, until an admin lifts it; then it is released again."""

from __future__ import annotations

from shared.domain.model import Phase
from tests.builders import body, ingest, person
from tests.e2e.conftest import bad_canary_event, build_e2e


def test_a_rolled_back_version_is_refused_then_an_admin_lets_it_through(emulator, table_store, clock):
    e2e = build_e2e(emulator, table_store, clock)
    try:
        first = e2e.submit(bad_canary_event())
        e2e.until(first, lambda r: r.is_final, seconds=60)
        rolled_back = e2e.service.get(first)
        assert rolled_back.phase is Phase.ROLLED_BACK

        again = bad_canary_event(release_id="web-1.2.0-again")
        refused = ingest(e2e.service, body(again), message_id=None, source="e2e")
        assert refused.outcome == "rejected" and refused.refusal == "forbidden"
        assert refused.errors[0][0] == "version" and rolled_back.reason in refused.reason

        site_key = rolled_back.site_key
        e2e.service.lift_quarantine(site_key, "1.2.0", actor=person("ada"), reason="the dependency is fixed")
        created = ingest(e2e.service, body(again), message_id=None, source="e2e")
        assert created.outcome == "created" and created.release.phase is Phase.DEPLOYING
        lifted = [a.entry for a in e2e.service.audit(first) if a.entry.action == "quarantine.lifted"]
        assert lifted and "the dependency is fixed" in lifted[0].message and lifted[0].actor.startswith("ada")
    finally:
        e2e.http.close()
