"""POST /api/sites/{siteKey}/redeploy over HTTP: the body is checked field by field, a site with
nothing that succeeded has nothing to redeploy, and the policy of the site redeployed to decides."""

from __future__ import annotations

from tests.builders import CANARY_EVENT, SUBSCRIPTION
from tests.functions.test_handlers import RID, http, principal, submit, tick

PRIMARY = f"{SUBSCRIPTION}~{CANARY_EVENT['target']['resourceGroup']}~contoso-web".lower()
TO = {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "site": "contoso-web-dr"}


def redeploy(indexed, payload, roles=("operator", "submitter", "reader")):
    return http(
        indexed,
        "redeploy_site",
        "POST",
        f"/api/sites/{PRIMARY}/redeploy",
        payload=payload,
        route={"siteKey": PRIMARY},
        headers={"X-MS-CLIENT-PRINCIPAL": principal("dora", list(roles))},
    )


def test_the_redeploy_route_checks_its_body_its_source_and_the_policy(indexed, app):
    bad, problem = redeploy(indexed, {"to": {**TO, "site": "-x"}, "reason": "dr", "extra": 1})
    assert bad.status_code == 400
    assert {e["field"] for e in problem["errors"]} == {"to.site", "extra"}

    nothing, problem = redeploy(indexed, {"to": TO, "reason": "dr"})
    assert nothing.status_code == 409 and "no release that succeeded" in problem["detail"]

    submit(indexed)
    for _ in range(40):
        if app.service.get(RID).is_final:
            break
        tick(indexed, app, 60)
    assert app.service.get(RID).phase.value == "succeeded"

    refused, problem = redeploy(indexed, {"to": TO, "reason": "dr"}, roles=("operator", "reader"))
    assert refused.status_code == 403 and problem["errors"][0]["field"] == "(origin)", problem
    outside, problem = redeploy(
        indexed, {"to": {**TO, "subscriptionId": "0" * 8 + "-0000-0000-0000-" + "0" * 12}, "reason": "dr"}
    )
    assert outside.status_code == 403 and problem["errors"][0]["field"] == "target"

    created, doc = redeploy(indexed, {"to": TO, "reason": "primary region down"})
    assert created.status_code == 201, doc
    assert doc["releaseId"] == f"{RID}:dr:contoso-web-dr" and doc["redeployOf"] == RID
    assert created.headers["Location"] == f"/api/releases/{RID}:dr:contoso-web-dr"
    assert app.service.get(RID).redeployed_as == (doc["releaseId"],)
