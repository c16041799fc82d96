"""Quarantine's scope is the policy's: the site the version was rolled back on, every site of the
same policy rule ("app"), or none."""

from __future__ import annotations

import pytest

from shared.domain.model import OverrideKind, Phase
from tests.builders import CANARY_EVENT, authority_for_tests, body, event, harness, ingest, person, policy_for_tests


def rolled_back_on_first_site(scope: str):
    h = harness()
    h.service.authority = authority_for_tests(policy_for_tests(quarantine=scope))
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    h.service.override("web-1.4.2", OverrideKind.ROLLBACK, actor=person("erin"), reason="checkout errors")
    for _ in range(30):
        if h.service.get("web-1.4.2").is_final:
            break
        h.tick("web-1.4.2", 60)
    assert h.phase("web-1.4.2") == Phase.ROLLED_BACK
    return h


def elsewhere(release_id="eu-1.4.2", site="contoso-web-eu"):
    return event(releaseId=release_id, target={**CANARY_EVENT["target"], "site": site})


@pytest.mark.parametrize(
    ("scope", "same_site", "other_site"),
    [("site", "rejected", "created"), ("app", "rejected", "rejected"), ("off", "created", "created")],
)
def test_the_policy_decides_where_a_rolled_back_version_is_refused(scope, same_site, other_site):
    h = rolled_back_on_first_site(scope)
    again = ingest(h.service, body(event(releaseId="web-1.4.2-b")), message_id=None, source="http")
    there = ingest(h.service, body(elsewhere()), message_id=None, source="http")
    assert (again.outcome, there.outcome) == (same_site, other_site)
    if there.outcome == "rejected":
        assert there.errors[0][0] == "version" and "on contoso-web (policy rule tests)" in there.reason
        assert "checkout errors" in there.reason
