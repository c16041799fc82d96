"""Each handler invoked through the indexed function with real azure.functions objects,
over Table Storage on Azurite. A release goes from HTTP or Service Bus to success by timer ticks."""

from __future__ import annotations

import base64
import json
import threading
import uuid

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from shared.authority.proofs import sign
from shared.domain.model import Phase
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, TEST_KEY, TEST_KEY_ID, body, event

RID = "web-1.4.2"


# The people of these tests, by what they may do (Entra ID app roles).
PEOPLE = {
    "sam": ("submitter", "reader"),
    "olga": ("operator", "reader"),
    "abe": ("approver", "reader"),
    "rita": ("reader",),
}
APPROVER_ACTIONS = {"approve", "promote-full"}


def http(
    indexed,
    name,
    method="GET",
    path="/api/releases",
    *,
    payload=None,
    raw=None,
    params=None,
    route=None,
    headers=None,
    who="olga",
):
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
    sent = {"Content-Type": "application/json"} if method == "POST" else {}
    if who is not None:
        sent["X-MS-CLIENT-PRINCIPAL"] = principal(who)
    sent.update(headers or {})
    req = func.HttpRequest(
        method,
        f"http://localhost:7071{path}",
        headers={k: v for k, v in sent.items() if v is not None},
        params=params or {},
        route_params=route or {},
        body=data,
    )
    response = indexed[name].get_user_function()(req)
    text = response.get_body().decode()
    return response, json.loads(text) if text else None


def submit(indexed, doc=CANARY_EVENT, **kw):
    kw.setdefault("who", "sam")
    return http(indexed, "submit_release", "POST", payload=doc, **kw)


def override(indexed, release_id, action, reason="testing", **kw):
    kw.setdefault("who", "abe" if action in APPROVER_ACTIONS else "olga")
    return http(
        indexed,
        "override_release",
        "POST",
        f"/api/releases/{release_id}/{action}",
        payload={"reason": reason} if reason is not None else None,
        route={"releaseId": release_id, "action": action},
        **kw,
    )


def sb_message(doc, message_id, *, signed_with=TEST_KEY, **kw):
    raw = body(doc) if isinstance(doc, dict) else doc
    properties = {}
    if signed_with is not None:
        properties = {"releaseSignature": sign(raw, signed_with), "releaseKeyId": TEST_KEY_ID}
    return ServiceBusMessage(
        body=raw,
        message_id=message_id,
        delivery_count=1,
        session_id="site",
        application_properties=properties,
        user_properties={},
        **kw,
    )


class Invocation:
    """What the Functions host passes as ``context``: the invocation id and its thread-local storage."""

    def __init__(self, function_name: str = "reconcile_timer"):
        self.invocation_id = f"invocation-{uuid.uuid4().hex[:8]}"
        self.function_name = function_name
        self.thread_local_storage = threading.local()


def tick(indexed, app, seconds=60, context=None):
    app.clock.advance(seconds)
    indexed["reconcile_timer"].get_user_function()(TimerRequest(past_due=False), context or Invocation())


def principal(name, roles=None):
    claims = [
        {"typ": "name", "val": name},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": f"oid-{name}"},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": "tenant-1"},
    ]
    claims += [{"typ": "roles", "val": role} for role in (roles if roles is not None else PEOPLE.get(name, ()))]
    doc = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_healthz_answers_without_a_key(indexed):
    response, doc = http(indexed, "healthz", path="/api/healthz")
    assert response.status_code == 200 and doc == {"status": "ok"}


def test_a_release_submitted_over_http_is_driven_to_success_by_the_timer(indexed, app):
    response, doc = submit(indexed)
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/releases/{RID}"
    assert doc["phase"] == "deploying" and doc["target"]["site"] == "contoso-web"
    for _ in range(30):
        tick(indexed, app)
    _, doc = http(indexed, "get_release", path=f"/api/releases/{RID}", route={"releaseId": RID})
    assert doc["phase"] == "succeeded"
    assert doc["weight"] == 0 and doc["traffic"]["newVersionPercent"] == 100, "the rule is gone; production runs it"
    _, audit = http(indexed, "get_release_audit", path=f"/api/releases/{RID}/audit", route={"releaseId": RID})
    phases = [(e["phaseFrom"], e["phaseTo"]) for e in audit["entries"] if e["phaseFrom"] != e["phaseTo"]]
    assert phases[-1] == ("promoting", "succeeded")
    assert all(e["actor"] and e["message"] and e["at"] for e in audit["entries"])


def test_a_release_sent_through_service_bus_is_created_and_started(indexed, app):
    msg = sb_message(event(releaseId=None), "sb-msg-1")
    indexed["release_events"].get_user_function()(msg)
    release = app.service.get("sb-msg-1")
    assert release.phase is Phase.DEPLOYING
    indexed["release_events"].get_user_function()(msg)  # redelivered: a no-op
    assert len(app.service.list().items) == 1


def test_an_invalid_service_bus_event_is_stored_and_completed(indexed, app, table_store):
    raw = b'{"target": 42}'
    msg = ServiceBusMessage(
        body=raw, message_id="bad-1", delivery_count=1, application_properties={}, user_properties={}
    )
    assert indexed["release_events"].get_user_function()(msg) is None  # returns: the message completes
    (row,) = table_store.list_rejected(app.clock.now().strftime("%Y-%m-%d"))
    assert row["body"] == raw and row["messageId"] == "bad-1"
    assert "target: must be an object" in row["reason"]


def test_a_service_bus_event_reusing_an_id_for_another_plan_is_stored_not_retried(indexed, app, table_store):
    submit(indexed)
    msg = sb_message(event(version="2.0"), "x")
    indexed["release_events"].get_user_function()(msg)
    (row,) = table_store.list_rejected(app.clock.now().strftime("%Y-%m-%d"))
    assert "different body" in row["reason"]


def test_a_storage_outage_makes_the_service_bus_trigger_raise_for_redelivery(indexed, app):
    from shared import bootstrap
    from shared.adapters.table_store import TableReleaseStore
    from shared.ports import StoreUnavailable
    from tests.builders import harness

    dead = TableReleaseStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
        retry_total=0,
    )
    bootstrap.use(
        bootstrap.Container(settings=bootstrap.container().settings, service=harness(store=dead).service, parts={})
    )
    msg = sb_message(CANARY_EVENT, "m")
    try:
        indexed["release_events"].get_user_function()(msg)
    except StoreUnavailable:
        pass
    else:
        raise AssertionError("the trigger must raise so Service Bus redelivers")
    response, doc = submit(indexed)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.mimetype == "application/problem+json"
    assert doc["type"].endswith("/storage-unavailable")


def test_a_duplicate_submission_returns_the_existing_release(indexed, app):
    submit(indexed)
    response, doc = submit(indexed)
    assert response.status_code == 200 and doc["releaseId"] == RID


def test_an_invalid_submission_is_a_problem_naming_the_fields(indexed, app):
    response, doc = submit(indexed, event(strategy={"type": "canary", "steps": [{"weight": 150, "bake": "1m"}]}))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert doc["type"].endswith("/invalid-release-event") and doc["status"] == 400
    assert {"field": "strategy.steps[0].weight", "message": "must be less than 100"} in doc["errors"]


def test_a_submission_without_any_release_id_asks_for_one(indexed, app):
    response, doc = submit(indexed, event(releaseId=None))
    assert response.status_code == 400 and doc["errors"][0]["field"] == "releaseId"
    response, doc = submit(indexed, event(releaseId=None), headers={"Idempotency-Key": "from-header-1"})
    assert response.status_code == 201 and doc["releaseId"] == "from-header-1"


def test_an_oversized_submission_is_refused(indexed, app):
    response, doc = submit(indexed, raw=b"{" + b" " * 70000 + b"}")
    assert response.status_code == 413 and doc["status"] == 413


def test_reusing_a_release_id_for_another_plan_is_a_conflict(indexed, app):
    submit(indexed)
    response, doc = submit(indexed, event(version="2.0.0"))
    assert response.status_code == 409 and doc["errors"][0]["field"] == "releaseId"


def test_unknown_releases_are_404_problems(indexed, app):
    for name, path in (("get_release", "/api/releases/nope"), ("get_release_audit", "/api/releases/nope/audit")):
        response, doc = http(indexed, name, path=path, route={"releaseId": "nope"})
        assert response.status_code == 404 and doc["type"].endswith("/release-not-found")
    response, doc = override(indexed, "nope", "pause")
    assert response.status_code == 404


def test_an_override_is_recorded_with_the_signed_in_person_as_actor(indexed, app):
    submit(indexed)
    response, doc = override(indexed, RID, "pause", "checking dashboards", who="olga")
    assert response.status_code == 202 and doc["paused"] is True
    _, audit = http(indexed, "get_release_audit", path=f"/api/releases/{RID}/audit", route={"releaseId": RID})
    last = audit["entries"][-1]
    assert last["actor"] == "olga (aad:tenant-1/oid-olga)" and "checking dashboards" in last["message"]


def test_without_sign_in_a_function_key_alone_changes_nothing(indexed, app):
    submit(indexed)
    response, doc = override(indexed, RID, "pause", who=None)
    assert response.status_code == 401 and doc["type"].endswith("/not-authenticated")
    response, _ = submit(indexed, BLUE_GREEN_EVENT, who=None)
    assert response.status_code == 401
    assert not app.service.get(RID).paused


def test_key_only_mode_for_local_development_can_operate_but_never_approve(indexed, app):
    from dataclasses import replace

    from shared import bootstrap

    container = bootstrap.container()
    local = replace(container.settings, trust_client_principal=False, auth_key_only=True)
    bootstrap.use(replace(container, settings=local))
    submit(indexed, event(promotion="manual"), who=None)
    response, _ = override(indexed, RID, "pause", headers={"X-MS-CLIENT-PRINCIPAL": principal("mallory")}, who=None)
    assert response.status_code == 202, "a principal header is ignored when App Service authentication is off"
    assert app.service.audit(RID)[-1].entry.actor == "function key (key:function)"
    response, doc = override(indexed, RID, "approve", who=None)
    assert response.status_code == 403 and doc["missingRole"] == "approver"


def test_an_override_not_allowed_now_is_a_409_saying_why(indexed, app):
    submit(indexed)
    response, doc = override(indexed, RID, "approve")
    assert response.status_code == 409
    assert doc["detail"] == "nothing is waiting for approval; the release is deploying"


def test_overrides_need_a_reason_and_a_known_action(indexed, app):
    submit(indexed)
    response, doc = override(indexed, RID, "pause", reason=None)
    assert response.status_code == 400 and doc["errors"][0]["field"] == "reason"
    response, doc = override(indexed, RID, "explode")
    assert response.status_code == 404 and "explode" in doc["detail"]
    response, doc = http(
        indexed,
        "override_release",
        "POST",
        f"/api/releases/{RID}/pause",
        raw=b'{"reason": "x", "extra": 1}',
        route={"releaseId": RID, "action": "pause"},
    )
    assert response.status_code == 400 and doc["errors"][0]["field"] == "extra"


def test_a_forged_principal_header_is_refused(indexed, app):
    submit(indexed)
    response, doc = override(indexed, RID, "pause", headers={"X-MS-CLIENT-PRINCIPAL": "not-base64!"})
    assert response.status_code == 400 and doc["errors"][0]["field"] == "X-MS-CLIENT-PRINCIPAL"


def test_every_override_route_moves_a_release_through_both_strategies(indexed, app):
    submit(indexed, event(promotion="manual"))
    for _ in range(4):
        tick(indexed, app)
    assert override(indexed, RID, "promote")[0].status_code == 202  # step 1 -> 2
    tick(indexed, app)
    assert override(indexed, RID, "pause")[0].status_code == 202
    assert override(indexed, RID, "resume")[0].status_code == 202
    assert override(indexed, RID, "promote-full")[0].status_code == 202  # skip to the swap
    for _ in range(3):
        tick(indexed, app)
    assert app.service.get(RID).phase is Phase.SUCCEEDED

    submit(indexed, BLUE_GREEN_EVENT | {"promotion": "manual"})
    for _ in range(4):
        tick(indexed, app)
    assert app.service.get("api-2.0.0").phase is Phase.AWAITING_APPROVAL
    response, doc = override(indexed, "api-2.0.0", "approve", who="sam")
    assert response.status_code == 403 and doc["missingRole"] == "approver"
    assert override(indexed, "api-2.0.0", "approve")[0].status_code == 202
    tick(indexed, app)  # swap started
    tick(indexed, app)  # production observed on the new version
    assert app.service.get("api-2.0.0").phase is Phase.GUARDING
    assert override(indexed, "api-2.0.0", "rollback", "error budget burning")[0].status_code == 202
    for _ in range(3):
        tick(indexed, app)
    assert app.service.get("api-2.0.0").phase is Phase.ROLLED_BACK
    response, doc = override(indexed, "api-2.0.0", "retry", "fixed")
    assert response.status_code == 201 and doc["retryOf"] == "api-2.0.0"
    assert response.headers["Location"] == "/api/releases/api-2.0.0-retry1"


def test_listing_filters_and_pages(indexed, app):
    submit(indexed)
    submit(indexed, BLUE_GREEN_EVENT)
    _, doc = http(indexed, "list_releases", params={"limit": "1"})
    assert len(doc["items"]) == 1 and doc["cursor"]
    _, more = http(indexed, "list_releases", params={"limit": "1", "cursor": doc["cursor"]})
    assert {doc["items"][0]["releaseId"], more["items"][0]["releaseId"]} == {RID, "api-2.0.0"}
    _, doc = http(indexed, "list_releases", params={"site": "contoso-api"})
    assert [i["releaseId"] for i in doc["items"]] == ["api-2.0.0"]
    _, doc = http(
        indexed,
        "list_releases",
        params={
            "subscriptionId": CANARY_EVENT["target"]["subscriptionId"],
            "resourceGroup": "rg-web",
            "site": "contoso-web",
            "phase": "deploying",
        },
    )
    assert [i["releaseId"] for i in doc["items"]] == [RID]
    response, doc = http(indexed, "list_releases", params={"phase": "sideways", "limit": "0"})
    assert response.status_code == 400 and {e["field"] for e in doc["errors"]} == {"phase", "limit"}
    response, doc = http(indexed, "list_releases", params={"cursor": "bm9wZQ"})
    assert response.status_code == 400 and doc["errors"][0]["field"] == "cursor"


def test_a_failed_release_holds_its_site_until_a_person_releases_it_over_http(indexed, app):
    from shared.ports import TerminalPlatformError

    submit(indexed)
    for _ in range(4):
        tick(indexed, app)
    submit(indexed, event(releaseId="web-1.4.3", version="1.4.3"))
    assert override(indexed, RID, "rollback", "bad numbers")[0].status_code == 202
    app.platform.fail_next("set_weight", TerminalPlatformError("409 ScopeLocked: a lock on the site", status=409))
    tick(indexed, app)
    _, doc = http(indexed, "get_release", path=f"/api/releases/{RID}", route={"releaseId": RID})
    assert doc["phase"] == "failed" and doc["holdsSite"] is True and doc["alertsPending"] == 0
    tick(indexed, app)
    assert app.service.get("web-1.4.3").phase is Phase.PENDING, "nothing deploys onto slots nobody cleaned"
    response, doc = override(indexed, RID, "release-site", "removed the routing rule by hand")
    assert response.status_code == 202 and doc["holdsSite"] is False
    assert app.service.get("web-1.4.3").phase is not Phase.PENDING, "the queued release starts"
    response, doc = override(indexed, RID, "release-site", "again")
    assert response.status_code == 409 and doc["detail"] == "the site is already free"


def test_a_policy_that_does_not_load_is_a_503_over_http_and_a_redelivery_on_service_bus(
    indexed, azurite, tmp_path, monkeypatch, caplog
):
    from shared import bootstrap
    from shared.authority.policy_file import PolicyError

    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\ntargets:\n  - name: web\n    match: {site: [oops]}\n")
    monkeypatch.setenv("RELEASE_POLICY_PATH", str(bad))
    monkeypatch.setenv("RELEASE_STORE_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    bootstrap.use(None)
    try:
        response, doc = submit(indexed)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert doc["type"].endswith("/misconfigured") and "targets[0].match.site" not in str(doc)
        assert any("line 4" in r.getMessage() and "targets[0].match.site" in r.getMessage() for r in caplog.records)
        with pytest.raises(PolicyError):  # Service Bus delivers it again once the app is fixed
            indexed["release_events"].get_user_function()(sb_message(CANARY_EVENT, "m"))
    finally:
        bootstrap.use(None)


def test_the_timer_ties_its_worker_threads_to_its_invocation_so_their_alerts_reach_its_logs(indexed, app):
    submit(indexed)
    seen = []
    reconcile = app.service.reconcile

    def watched(release_id, **kw):
        seen.append((threading.current_thread().name, getattr(context.thread_local_storage, "invocation_id", None)))
        return reconcile(release_id, **kw)

    app.service.reconcile = watched
    context = Invocation()
    tick(indexed, app, 60, context)
    assert seen and all(name.startswith("reconcile") and ident == context.invocation_id for name, ident in seen)


def test_a_release_says_in_plain_words_what_it_waits_for(indexed, app):
    submit(indexed)
    for _ in range(20):
        if app.service.get(RID).phase is Phase.SHIFTING:
            break
        tick(indexed, app, seconds=15)
    _, doc = http(indexed, "get_release", path=f"/api/releases/{RID}", route={"releaseId": RID})
    assert doc["status"]["waitingFor"] in ("bake", "platform")
    assert doc["status"]["summary"].startswith("step 1/2 (10%)") or doc["status"]["summary"].startswith("baking")
    _, queued = submit(indexed, event(releaseId="web-1.4.3", version="1.4.3"))
    assert queued["phase"] == "pending"
    assert queued["status"] == {
        "summary": f"queued behind {RID}; starts when the site is free",
        "waitingFor": "site",
        "until": None,
        "nextCheckAt": queued["status"]["nextCheckAt"],
    }


def roll_back_a_bad_canary(indexed, app):
    """Submit a canary whose measurements fail, and tick until the controller has rolled it back."""
    from tests.functions.test_releasectl import failing

    app.analyzer.script = failing
    submit(indexed)
    for _ in range(40):
        if app.service.get(RID).is_final:
            break
        tick(indexed, app, seconds=15)


def test_stats_count_the_bad_releases_stopped_at_their_first_step(indexed, app):
    roll_back_a_bad_canary(indexed, app)
    assert app.service.get(RID).phase is Phase.ROLLED_BACK
    response, doc = http(indexed, "get_stats", path="/api/stats")
    assert response.status_code == 200
    assert doc["overall"] == {"releases": {"rolledBack": 1}, "stoppedEarly": 1}
    (site,) = doc["sites"]
    (stopped,) = site["stoppedEarly"]
    assert (stopped["releaseId"], stopped["step"], stopped["site"]) == (RID, 1, "contoso-web")
    assert "error rate" in stopped["reason"] and stopped["evidence"][0]["canary"]["errors"] > 0
    refused, problem = http(indexed, "get_stats", path="/api/stats", who="nobody")
    assert refused.status_code == 403 and "reader" in problem["detail"]


def test_every_measurement_is_kept_as_evidence_and_the_rollback_names_the_ones_that_caused_it(indexed, app):
    roll_back_a_bad_canary(indexed, app)
    evidence = {"path": f"/api/releases/{RID}/evidence", "route": {"releaseId": RID}}
    response, doc = http(indexed, "get_release_evidence", **evidence)
    assert response.status_code == 200
    assert doc["total"] == doc["kept"] == len(doc["measurements"]) >= 1
    assert sum(doc["verdicts"].values()) == doc["total"] and doc["verdicts"]["fail"] >= 1
    newest = doc["measurements"][0]
    assert newest["verdict"] == "fail" and newest["phase"] == "shifting" and newest["step"] == 1
    assert newest["numbers"]["canaryErrors"] > 0 and newest["numbers"]["maxErrorRate"] == 0.05
    assert any("error rate" in why for why in newest["why"]) and newest["windowStart"]
    _, audit = http(indexed, "get_release_audit", path=f"/api/releases/{RID}/audit", route={"releaseId": RID})
    (rollback,) = [e for e in audit["entries"] if e["action"] == "rollback.started"]
    assert rollback["details"]["measurements"] == [newest["seq"]]
    refused, _ = http(indexed, "get_release_evidence", **evidence, who="nobody")
    assert refused.status_code == 403
