"""Each attack on the controller's authority, tried through the functions as the host runs them: it
now fails for the attacker, and nothing but a stored rejection is left behind."""

from __future__ import annotations

import hashlib
import logging

import pytest

from shared.authority.gatekeeper import Gatekeeper
from shared.authority.proofs import EventVerifier, OidcVerifier, sign
from shared.domain.model import Phase
from shared.domain.policy import Issuer, Source
from tests.authority.issuer import AUDIENCE, LocalIssuer
from tests.builders import CANARY_EVENT, TEST_KEY, TEST_KEY_ID, body, event, policy_for_tests
from tests.functions.test_handlers import RID, http, override, principal, sb_message, submit, tick

FOREIGN = {"subscriptionId": "99999999-9999-9999-9999-999999999999", "resourceGroup": "rg-x", "site": "victim"}


def rejections(table_store, app):
    return table_store.list_rejected(app.clock.now().strftime("%Y-%m-%d"))


def deliver(indexed, msg):
    assert indexed["release_events"].get_user_function()(msg) is None, "the message completes"


# -- approvals ------------------------------------------------------------------------------------


def test_a_person_cannot_approve_the_release_she_submitted(indexed, app):
    both = ["submitter", "approver", "reader"]
    response, _ = submit(indexed, event(promotion="manual"), headers={"X-MS-CLIENT-PRINCIPAL": principal("eve", both)})
    assert response.status_code == 201
    for _ in range(12):
        tick(indexed, app, 400)
    assert app.service.get(RID).phase is Phase.AWAITING_APPROVAL
    response, doc = override(indexed, RID, "approve", headers={"X-MS-CLIENT-PRINCIPAL": principal("eve", both)})
    assert response.status_code == 409 and "two-person rule" in doc["detail"]
    response, doc = override(indexed, RID, "promote-full", headers={"X-MS-CLIENT-PRINCIPAL": principal("eve", both)})
    assert response.status_code == 409 and "two-person rule" in doc["detail"]
    assert override(indexed, RID, "approve", who="abe")[0].status_code == 202, "someone else may"


def test_the_pipeline_that_submitted_a_release_cannot_approve_it(indexed, app):
    pipeline = principal("release-pipeline", ["submitter", "approver"])
    raw = body(event(promotion="manual"))
    headers = {
        "X-MS-CLIENT-PRINCIPAL": pipeline,
        "X-Release-Signature-256": sign(raw, TEST_KEY),
        "X-Release-Key-Id": TEST_KEY_ID,
    }
    assert submit(indexed, raw=raw, headers=headers)[0].status_code == 201
    for _ in range(12):
        tick(indexed, app, 400)
    response, doc = override(indexed, RID, "approve", headers={"X-MS-CLIENT-PRINCIPAL": pipeline})
    assert response.status_code == 409 and "release-pipeline" in doc["detail"]


def test_an_approver_without_the_policys_group_cannot_approve(indexed, app):
    from shared.domain.model import ApprovalRule, Role

    app.service.authority = Gatekeeper(
        policy_for_tests(before_promotion=ApprovalRule(Role.APPROVER, "release-managers")),
        EventVerifier({TEST_KEY_ID: TEST_KEY}, None),
    )
    deliver(indexed, sb_message(CANARY_EVENT, "m"))  # the event asked for automatic promotion
    for _ in range(12):
        tick(indexed, app, 400)
    assert app.service.get(RID).phase is Phase.AWAITING_APPROVAL, "the policy decides approvals, not the event"
    response, doc = override(indexed, RID, "approve", who="abe")
    assert response.status_code == 409 and "release-managers" in doc["detail"]


# -- where events come from ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "signed_with", "says"),
    [
        (CANARY_EVENT, None, "not signed"),
        (CANARY_EVENT, "a guessed key", "does not match the body"),
        (event(target=FOREIGN), TEST_KEY, "no release policy rule covers"),
        (event(artifact={"container": "docker.io/attacker/backdoor:latest"}), None, "not signed"),
        (event(artifact={"container": "evil.azurecr.io/backdoor:1"}), TEST_KEY, "not a registry this site may"),
    ],
    ids=["unsigned", "forged", "foreign site", "unsigned backdoor", "unlisted registry"],
)
def test_a_service_bus_event_that_proves_nothing_or_is_not_allowed_is_stored_and_nothing_runs(
    indexed, app, table_store, doc, signed_with, says
):
    deliver(indexed, sb_message(doc, "attack-1", signed_with=signed_with))
    (row,) = rejections(table_store, app)
    assert says in row["reason"]
    assert app.service.list().items == [] and app.platform.calls == []


def test_over_http_an_unproven_or_disallowed_event_is_a_problem_naming_why(indexed, app):
    outsider = principal("mallory", ["submitter"])
    doc = event(target=FOREIGN)
    response, problem = submit(indexed, doc, headers={"X-MS-CLIENT-PRINCIPAL": outsider})
    assert response.status_code == 403 and "no release policy rule covers" in problem["detail"]
    assert problem["errors"][0]["field"] == "target"
    raw = body(CANARY_EVENT)
    forged = {"X-Release-Signature-256": sign(raw, "guess"), "X-Release-Key-Id": TEST_KEY_ID}
    response, problem = submit(indexed, raw=raw, headers=forged)
    assert response.status_code == 401 and problem["errors"][0]["field"] == "signature"
    assert app.service.list().items == []


@pytest.fixture
def issuer(app):
    running = LocalIssuer()
    app.service.authority = Gatekeeper(
        policy_for_tests(
            sources=(Source(oidc_issuer="github", claims={"repository": "contoso/web", "ref": "refs/heads/main"}),)
        ),
        EventVerifier({}, OidcVerifier({"github": Issuer(running.url, AUDIENCE)})),
    )
    yield running
    running.close()


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"repository": "contoso/web", "ref": "refs/heads/main"}, None),
        ({"repository": "mallory/web", "ref": "refs/heads/main"}, "may not release"),
        ({"repository": "contoso/web", "ref": "refs/heads/experiment"}, "may not release"),
        ({"repository": "contoso/web", "ref": "refs/heads/main", "lifetime": -300}, "has expired"),
    ],
    ids=["main of contoso/web", "another repository", "another branch", "expired"],
)
def test_only_main_of_the_named_repository_may_release_the_site(indexed, app, table_store, issuer, claims, says):
    token = issuer.token(**claims)
    msg = sb_message(CANARY_EVENT, "m", signed_with=None)
    msg.application_properties["releaseIdentityToken"] = token  # type: ignore[index]
    deliver(indexed, msg)
    if says is None:
        release = app.service.get(RID)
        assert release.submitters[0].id == "oidc:github:repo:contoso/web:ref:refs/heads/main"
        assert rejections(table_store, app) == []
    else:
        (row,) = rejections(table_store, app)
        assert says in row["reason"] and token not in str(row)
        assert app.service.list().items == []


def test_a_ci_token_carries_one_event_only_but_its_redelivery_is_the_same_event(indexed, app, table_store, issuer):
    token = issuer.token()
    first = sb_message(CANARY_EVENT, "m-1", signed_with=None)
    first.application_properties["releaseIdentityToken"] = token  # type: ignore[index]
    deliver(indexed, first)
    again = sb_message(CANARY_EVENT, "m-1", signed_with=None)
    again.application_properties["releaseIdentityToken"] = token  # type: ignore[index]
    deliver(indexed, again)
    assert [s.release_id for s in app.service.list().items] == [RID]
    assert rejections(table_store, app) == []
    # Someone who saw the token puts it on a body of their own, within its lifetime.
    forged = sb_message(event(releaseId="web-evil", version="6.6.6"), "m-2", signed_with=None)
    forged.application_properties["releaseIdentityToken"] = token  # type: ignore[index]
    deliver(indexed, forged)
    (row,) = rejections(table_store, app)
    assert "already used" in row["reason"] and RID in row["reason"] and token not in str(row)
    assert [s.release_id for s in app.service.list().items] == [RID]


def test_a_ci_token_without_a_jti_is_refused(indexed, app, table_store, issuer):
    msg = sb_message(CANARY_EVENT, "m", signed_with=None)
    msg.application_properties["releaseIdentityToken"] = issuer.token(jti=None)  # type: ignore[index]
    deliver(indexed, msg)
    (row,) = rejections(table_store, app)
    assert "jti" in row["reason"] and app.service.list().items == []


# -- secrets ----------------------------------------------------------------------------------------


def test_app_setting_values_are_never_read_back(indexed, app, table_store):
    secret = "s3cr3t-value-never-shown"
    submit(
        indexed, event(appSettings={"API_TOKEN": secret, "VAULTED": "@Microsoft.KeyVault(VaultName=kv;SecretName=x)"})
    )
    _, view = http(indexed, "get_release", path=f"/api/releases/{RID}", route={"releaseId": RID}, who="rita")
    assert secret not in str(view)
    assert view["spec"]["appSettings"] == {
        "API_TOKEN": {"keyVaultReference": False},
        "VAULTED": {"keyVaultReference": True},
    }
    _, audit = http(indexed, "get_release_audit", path=f"/api/releases/{RID}/audit", route={"releaseId": RID})
    assert secret not in str(audit)
    bad = event(releaseId="bad-1", appSettings={"API_TOKEN": secret}, version=None)
    deliver(indexed, sb_message(bad, "bad-1"))
    (row,) = rejections(table_store, app)
    assert secret.encode() not in row["body"] and b"API_TOKEN" in row["body"]
    response, listed = http(indexed, "list_rejections", path="/api/rejections", who="rita")
    assert response.status_code == 200
    (shown,) = listed["items"]
    assert shown["messageId"] == "bad-1" and "API_TOKEN" in shown["body"] and secret not in str(listed)


@pytest.mark.parametrize(
    ("raw", "kept", "secret"),
    [
        (
            body(
                event(releaseId="sas-1", artifact={"package": "https://x.blob.core.windows.net/p.zip?sv=1&sig=S3CR3T"})
            ),
            b"sig=(value withheld)",
            b"S3CR3T",
        ),
        (
            body(event(releaseId="cred-1", artifact={"package": "https://bob:S3CR3T@x.blob.core.windows.net/p.zip"})),
            b"https://(value withheld)@x.blob.core.windows.net",
            b"S3CR3T",
        ),
        (b'{"app\\u0053ettings": {"API_TOKEN": "S3CR3T"}, "releaseId": "x"', b"may hold a secret", b"S3CR3T"),
        (b'{"appSettings": {"API_TOKEN": "S3CR3T"}, "appSettings": {"B": "S3CR3T"}}', b'"B"', b"S3CR3T"),
    ],
    ids=["SAS token in a package URL", "password in a package URL", "escaped key, unreadable body", "duplicate keys"],
)
def test_a_refused_event_is_stored_without_the_secrets_it_carried(indexed, app, table_store, raw, kept, secret):
    deliver(indexed, sb_message(raw, "refused"))
    (row,) = rejections(table_store, app)
    assert secret not in row["body"] and kept in row["body"], row["body"]
    response, listed = http(indexed, "list_rejections", path="/api/rejections", who="rita")
    assert response.status_code == 200 and secret.decode() not in str(listed)
    (shown,) = listed["items"]
    assert shown["received"]["receivedBytes"] == len(raw)
    assert shown["received"]["receivedSha256"] == hashlib.sha256(raw).hexdigest()


def test_no_log_line_carries_a_key_a_query_string_or_a_header_value(indexed, app, caplog, monkeypatch):
    from shared import bootstrap

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(bootstrap.get_service(), "list", boom)
    response, _ = http(
        indexed,
        "list_releases",
        path="/api/releases?code=FUNCTION-KEY-SECRET",
        params={"code": "FUNCTION-KEY-SECRET"},
        headers={"X-Release-Key-Id": "HEADER-SECRET"},
    )
    assert response.status_code == 500
    submit(indexed, CANARY_EVENT, headers={"X-Release-Identity-Token": "TOKEN-SECRET"})
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for secret in ("FUNCTION-KEY-SECRET", "HEADER-SECRET", "TOKEN-SECRET", principal("olga")):
        assert secret not in text


# -- roles -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "action", "role"),
    [
        ("rita", "pause", "operator"),
        ("rita", "rollback", "operator"),
        ("sam", "approve", "approver"),
        ("olga", "approve", "approver"),
        ("olga", "promote-full", "approver"),
        ("abe", "retry", "operator"),
        ("abe", "release-site", "operator"),
    ],
)
def test_every_change_needs_its_role_and_a_refusal_names_it(indexed, app, who, action, role):
    submit(indexed)
    response, problem = override(indexed, RID, action, who=who)
    assert response.status_code == 403 and problem["missingRole"] == role
    assert role in problem["detail"]


def test_a_reader_cannot_submit_and_a_person_without_roles_cannot_read(indexed, app):
    assert submit(indexed, who="rita")[0].status_code == 403
    nobody = principal("nobody", [])
    for name, path in (("list_releases", "/api/releases"), ("list_rejections", "/api/rejections")):
        response, problem = http(indexed, name, path=path, headers={"X-MS-CLIENT-PRINCIPAL": nobody}, who=None)
        assert response.status_code == 403 and problem["missingRole"] == "reader"


def test_the_policy_is_readable_by_readers(indexed, app):
    response, doc = http(indexed, "get_policy", path="/api/policy", who="rita")
    assert response.status_code == 200 and doc["policy"]["version"] == 1 and doc["digest"] == "tests"
