"""Quarantine: a version rolled back on a site is refused there, with the rollback's reason, until an
admin lifts it with a reason (audited on the rolled-back release). Over HTTP, on Azurite."""

from __future__ import annotations

from tests.builders import event
from tests.functions.test_handlers import RID, http, principal, roll_back_a_bad_canary, submit


def lift(indexed, site_key, version, who, reason="the fix is in the config, not the build"):
    return http(
        indexed,
        "lift_quarantine",
        "POST",
        f"/api/sites/{site_key}/quarantine/{version}/lift",
        payload={"reason": reason},
        route={"siteKey": site_key, "version": version},
        headers={"X-MS-CLIENT-PRINCIPAL": principal(who, ["admin", "reader"] if who == "ada" else None)},
    )


def test_a_rolled_back_version_is_refused_until_an_admin_lifts_it(indexed, app):
    roll_back_a_bad_canary(indexed, app)
    rolled_back = app.service.get(RID)
    again = event(releaseId="web-1.4.2-again")  # the same version, a new release id
    refused, problem = submit(indexed, again)
    assert refused.status_code == 403
    (error,) = problem["errors"]
    assert error["field"] == "version" and "quarantined on this site" in error["message"]
    assert rolled_back.reason in error["message"] and "lift" in error["message"]

    listed, doc = http(indexed, "list_quarantine", path="/api/quarantine", who="rita")
    assert listed.status_code == 200
    (entry,) = doc["items"]
    assert (entry["version"], entry["releaseId"], entry["site"]) == ("1.4.2", RID, "contoso-web")
    site_key = entry["siteKey"]

    not_admin, problem = lift(indexed, site_key, "1.4.2", "olga")
    assert not_admin.status_code == 403 and problem["missingRole"] == "admin"
    missing, _ = lift(indexed, site_key, "9.9.9", "ada")
    assert missing.status_code == 404
    lifted, doc = lift(indexed, site_key, "1.4.2", "ada")
    assert lifted.status_code == 200 and doc["lifted"]["releaseId"] == RID
    audit = [e.entry for e in app.service.audit(RID)]
    assert audit[-1].action == "quarantine.lifted" and "the fix is in the config" in audit[-1].message

    created, _ = submit(indexed, again)
    assert created.status_code == 201
    assert http(indexed, "list_quarantine", path="/api/quarantine", who="rita")[1]["items"] == []
