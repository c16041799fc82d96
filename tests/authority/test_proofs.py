"""Where an event came from: HMAC signatures with key ids, and CI identity tokens verified against a
real OIDC issuer on 127.0.0.1 (discovery, JWKS, audience, lifetime, claims); and who a caller is."""

from __future__ import annotations

import base64
import json

import pytest

from shared.authority.principals import (
    AccessSettings,
    BadPrincipal,
    Forbidden,
    NotAuthenticated,
    caller,
    parse_role_map,
    require,
)
from shared.authority.proofs import EventProof, EventVerifier, OidcVerifier, ProofRefused, sign
from shared.domain.model import ActorKind, Role
from shared.domain.policy import Issuer
from tests.authority.issuer import AUDIENCE, LocalIssuer

BODY = b'{"releaseId": "web-1"}'
KEYS = {"ci2026": "current-key", "ci2025": "previous-key"}


@pytest.fixture
def issuer():
    running = LocalIssuer()
    yield running
    running.close()


def verifier(issuer: LocalIssuer | None = None) -> EventVerifier:
    oidc = OidcVerifier({"github": Issuer(issuer.url, AUDIENCE)}) if issuer else None
    return EventVerifier(KEYS, oidc)


# -- HMAC ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_id", ["ci2026", "ci2025"])
def test_an_event_signed_with_any_current_key_proves_its_key(key_id):
    origin = verifier().origin(BODY, EventProof(sign(BODY, KEYS[key_id]), key_id))
    assert origin.key_id == key_id and origin.actor.kind is ActorKind.CI


@pytest.mark.parametrize(
    ("proof", "field"),
    [
        (EventProof(), "signature"),
        (EventProof(sign(BODY, "current-key"), None), "signature"),
        (EventProof(sign(BODY, "guessed"), "ci2026"), "signature"),
        (EventProof(sign(BODY + b" ", "current-key"), "ci2026"), "signature"),
        (EventProof(sign(BODY, "current-key"), "retired"), "key id"),
        (EventProof("sha256=" + "0" * 64, "ci2026"), "signature"),
    ],
    ids=["unsigned", "no key id", "forged", "other body", "unknown key", "zeros"],
)
def test_an_unsigned_or_forged_event_proves_nothing(proof, field):
    with pytest.raises(ProofRefused) as caught:
        verifier().origin(BODY, proof)
    assert caught.value.field == field


# -- CI identity tokens (OIDC) ----------------------------------------------------------------------------


def _other_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _unsigned(issuer: LocalIssuer) -> str:
    def part(doc):
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    real = issuer.token()
    claims = json.loads(base64.urlsafe_b64decode(real.split(".")[1] + "=="))
    return f"{part({'alg': 'none', 'kid': 'key-1'})}.{part(claims)}."


def test_a_ci_token_proves_the_pipeline_with_its_claims(issuer):
    origin = verifier(issuer).origin(BODY, EventProof(identity_token=issuer.token()))
    assert origin.issuer == "github"
    assert origin.claims["repository"] == "contoso/web" and origin.claims["ref"] == "refs/heads/main"
    assert origin.actor.id == "oidc:github:repo:contoso/web:ref:refs/heads/main"


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (lambda i: i.token(lifetime=-120), "has expired"),
        (lambda i: i.token(audience="api://someone-else"), "not for this controller"),
        (lambda i: i.token(issuer="https://attacker.example"), "not one the policy trusts"),
        (lambda i: i.token(key=_other_key()), "not valid"),
        (lambda i: i.token(kid="key-9", key=_other_key()), "does not publish"),
        (lambda i: "not.a.jwt", "not a JSON Web Token"),
        (_unsigned, "not an accepted algorithm"),
    ],
    ids=["expired", "wrong audience", "unknown issuer", "forged", "unknown key", "garbage", "alg none"],
)
def test_a_bad_ci_token_proves_nothing(issuer, token, says):
    with pytest.raises(ProofRefused, match=says):
        verifier(issuer).origin(BODY, EventProof(identity_token=token(issuer)))


def test_the_issuers_keys_are_cached_and_refetched_when_it_rotates(issuer):
    v = verifier(issuer)
    v.origin(BODY, EventProof(identity_token=issuer.token()))
    v.origin(BODY, EventProof(identity_token=issuer.token()))
    assert issuer.jwks_requests == 1, "cached"
    issuer.rotate("key-2")
    from shared.authority import proofs

    cooldown, proofs.JWKS_REFRESH_COOLDOWN = proofs.JWKS_REFRESH_COOLDOWN, 0
    try:
        assert v.origin(BODY, EventProof(identity_token=issuer.token(kid="key-2"))).issuer == "github"
    finally:
        proofs.JWKS_REFRESH_COOLDOWN = cooldown
    assert issuer.jwks_requests == 2


# -- callers ------------------------------------------------------------------------------------------------


def principal(**claims) -> str:
    doc = {
        "auth_typ": "aad",
        "name_typ": "name",
        "role_typ": "roles",
        "claims": [{"typ": k, "val": v} for k, vs in claims.items() for v in (vs if isinstance(vs, list) else [vs])],
    }
    return base64.b64encode(json.dumps(doc).encode()).decode()


ON = AccessSettings(authentication_on=True)


def test_a_person_is_known_by_tenant_and_object_id_with_roles_from_app_role_claims():
    header = principal(name="Abe", oid="o-1", tid="t-1", roles=["approver", "reader", "Someone.Else"], groups=["g-1"])
    actor = caller({"x-ms-client-principal": header}, ON)
    assert actor.id == "aad:t-1/o-1" and actor.name == "Abe" and actor.kind is ActorKind.PERSON
    assert actor.roles == {Role.APPROVER, Role.READER} and actor.groups == {"g-1"}


def test_app_role_values_are_mapped_to_roles():
    settings = AccessSettings(authentication_on=True, role_map=parse_role_map("Release.Approve=approver"))
    header = principal(name="Abe", oid="o-1", tid="t-1", roles=["Release.Approve", "approver"])
    assert caller({"x-ms-client-principal": header}, settings).roles == {Role.APPROVER}


def test_the_same_display_name_is_not_the_same_person():
    one = caller({"x-ms-client-principal": principal(name="Abe", oid="o-1", tid="t")}, ON)
    two = caller({"x-ms-client-principal": principal(name="Abe", oid="o-2", tid="t")}, ON)
    assert one.id != two.id


@pytest.mark.parametrize("header", ["not-base64!", base64.b64encode(b"[1]").decode(), principal(name="no oid")])
def test_a_malformed_principal_is_refused(header):
    with pytest.raises(BadPrincipal):
        caller({"x-ms-client-principal": header}, ON)


def test_without_authentication_a_key_alone_is_nobody_unless_key_only_mode_is_on():
    with pytest.raises(NotAuthenticated):
        caller({}, AccessSettings(authentication_on=False))
    with pytest.raises(NotAuthenticated):
        caller({}, ON)
    local = caller({"x-ms-client-principal": principal(name="x", oid="o")}, AccessSettings(False, key_only=True))
    assert local.kind is ActorKind.KEY and Role.APPROVER not in local.roles


def test_every_action_names_the_role_it_needs():
    reader = caller({"x-ms-client-principal": principal(name="R", oid="r", tid="t", roles="reader")}, ON)
    require(reader, "get")
    for action in ("submit", "pause", "approve", "promote-full", "release-site", "retry"):
        with pytest.raises(Forbidden) as caught:
            require(reader, action)
        assert caught.value.role.value in str(caught.value)
