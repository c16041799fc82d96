"""Disaster recovery on the emulator: a site's last good release redeployed to another site runs
through the same pipeline, checks and analysis there, linked both ways."""

from __future__ import annotations

import pytest

from devstack.appservice import AppServiceEmulator
from shared.domain.model import Phase, Target
from shared.service import NothingToRedeploy
from tests.builders import SUBSCRIPTION, person
from tests.e2e.conftest import RG, build_e2e, canary_event, emulator_config, sites_named

PRIMARY, SECONDARY = "contoso-web", "contoso-web-dr"


@pytest.fixture
def two_sites(clock):
    with AppServiceEmulator(emulator_config(clock, sites=sites_named([PRIMARY, SECONDARY]))) as running:
        yield running


def test_the_last_good_release_of_a_site_is_redeployed_to_another_through_the_pipeline(two_sites, table_store, clock):
    e2e = build_e2e(two_sites, table_store, clock)
    try:
        primary = f"{SUBSCRIPTION}~{RG}~{PRIMARY}".lower()
        with pytest.raises(NothingToRedeploy):
            e2e.service.redeploy(primary, Target(SUBSCRIPTION, RG, SECONDARY), actor=person("olga"), reason="dr")
        source = e2e.submit(canary_event(release_id="web-1.1.0", version="1.1.0", steps=(20,)))
        e2e.until(source, lambda r: r.is_final, seconds=60)
        assert e2e.phase(source) is Phase.SUCCEEDED

        result = e2e.service.redeploy(
            primary, Target(SUBSCRIPTION, RG, SECONDARY), actor=person("olga"), reason="West Europe is down"
        )
        assert result.outcome == "created"
        copy = result.release
        assert copy.id == f"web-1.1.0:dr:{SECONDARY}" and copy.spec.redeploy_of == source
        assert copy.spec.target.site == SECONDARY and copy.spec.version == "1.1.0"
        e2e.until(copy.id, lambda r: r.is_final, seconds=60)
        assert e2e.phase(copy.id) is Phase.SUCCEEDED
        audit = [a.entry.action for a in e2e.service.audit(copy.id)]
        assert {"validation.passed", "step.started", "analysis.passed", "succeeded"} <= set(audit), audit

        assert e2e.service.get(source).redeployed_as == (copy.id,)
        linked = [a.entry for a in e2e.service.audit(source) if a.entry.action == "redeploy.requested"]
        assert linked and "West Europe is down" in linked[0].message and linked[0].actor.startswith("olga")
        dr = two_sites.site(SECONDARY).production.settings
        assert (dr["RELEASE_ID"], dr["RELEASE_VERSION"]) == (copy.id, "1.1.0")

        again = e2e.service.redeploy(primary, Target(SUBSCRIPTION, RG, SECONDARY), actor=person("olga"), reason="x")
        assert again.outcome == "duplicate" and e2e.service.get(source).redeployed_as == (copy.id,)
    finally:
        e2e.http.close()
