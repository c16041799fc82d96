"""People at the HTTP edge: who is asking (App Service authentication's principal, or a function key
alone in key-only mode) and which role each route needs.

Roles come from the principal's role claims (Entra ID app roles), mapped to the controller's roles
by ``AUTH_ROLE_MAP``; people are compared and recorded by tenant and object id, never by display
name. Without App Service authentication a function key grants nothing that changes state, unless
``AUTH_KEY_ONLY`` opts into key-only mode for local development — and even then it cannot approve.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from shared.domain.model import Actor, ActorKind, Role

OID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
TID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
NAME_CLAIMS = ("name", "preferred_username", "upn", "email", "unique_name")
GROUP_CLAIMS = ("groups",)
MAX_PRINCIPAL_HEADER = 16 * 1024

# What each action needs. Reading needs ``reader``; every change needs its own role.
ACTION_ROLES: dict[str, Role] = {
    "list": Role.READER,
    "get": Role.READER,
    "audit": Role.READER,
    "evidence": Role.READER,
    "policy": Role.READER,
    "rejections": Role.READER,
    "stats": Role.READER,
    "dashboard": Role.READER,
    "quarantine": Role.READER,
    "submit": Role.SUBMITTER,
    "pause": Role.OPERATOR,
    "resume": Role.OPERATOR,
    "rollback": Role.OPERATOR,
    "retry": Role.OPERATOR,
    "promote": Role.OPERATOR,
    "release-site": Role.OPERATOR,
    "redeploy": Role.OPERATOR,
    "approve": Role.APPROVER,
    "promote-full": Role.APPROVER,
    "lift-quarantine": Role.ADMIN,
    "ignore-schedule": Role.ADMIN,
    "control": Role.READER,
    "rollouts": Role.READER,
    "stop": Role.ADMIN,
}


class NotAuthenticated(Exception):
    """No identity this deployment accepts: 401/403 with what to set up."""


class BadPrincipal(Exception):
    """The principal header is not what App Service sends."""


class Forbidden(Exception):
    def __init__(self, actor: Actor, action: str, role: Role):
        self.actor, self.action, self.role = actor, action, role
        super().__init__(f"{action} needs the role {role}; {actor.label} does not have it")


@dataclass(frozen=True)
class AccessSettings:
    authentication_on: bool  # WEBSITE_AUTH_ENABLED: App Service sets the principal header
    role_claim: str = "roles"
    role_map: Mapping[str, Role] | None = None  # app role value -> controller role
    key_only: bool = False
    key_only_roles: frozenset[Role] = frozenset({Role.READER, Role.SUBMITTER, Role.OPERATOR})


def parse_role_map(text: str) -> dict[str, Role]:
    """``Release.Approve=approver,Release.Read=reader`` (an app role's value, then our role)."""
    mapping: dict[str, Role] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        value, _, role = pair.partition("=")
        mapping[value.strip()] = Role(role.strip())
    return mapping


def _claims(principal: dict) -> dict[str, list[str]]:  # type: ignore[type-arg]
    out: dict[str, list[str]] = {}
    for claim in principal.get("claims") or []:
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
            out.setdefault(claim["typ"], []).append(claim["val"])
    return out


def _first(claims: dict[str, list[str]], names: tuple[str, ...]) -> str | None:
    for name in names:
        if claims.get(name):
            return claims[name][0]
    return None


def person_from_header(encoded: str, settings: AccessSettings) -> Actor:
    """The signed-in person in App Service's ``X-MS-CLIENT-PRINCIPAL`` header."""
    if len(encoded) > MAX_PRINCIPAL_HEADER:
        raise BadPrincipal("the X-MS-CLIENT-PRINCIPAL header is too large")
    try:
        principal = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise BadPrincipal(
            "the X-MS-CLIENT-PRINCIPAL header is not base64 JSON from App Service authentication"
        ) from None
    if not isinstance(principal, dict):
        raise BadPrincipal("the X-MS-CLIENT-PRINCIPAL header is not a principal object")
    claims = _claims(principal)
    oid, tid = _first(claims, OID_CLAIMS), _first(claims, TID_CLAIMS)
    if not oid:
        raise BadPrincipal("the principal has no object id (oid) claim: sign in with Entra ID")
    name = _first(claims, (principal.get("name_typ") or "", *NAME_CLAIMS)) or oid
    role_claim = principal.get("role_typ") or settings.role_claim
    values = claims.get(role_claim, []) + (
        claims.get(settings.role_claim, []) if role_claim != settings.role_claim else []
    )
    roles: set[Role] = set()
    for value in values:
        if settings.role_map:
            if value in settings.role_map:
                roles.add(settings.role_map[value])
        elif value in Role._value2member_map_:
            roles.add(Role(value))
    groups = frozenset(v for name_ in GROUP_CLAIMS for v in claims.get(name_, []))
    return Actor(
        id=f"aad:{tid or 'unknown'}/{oid}",
        name=name[:200],
        kind=ActorKind.PERSON,
        roles=frozenset(roles),
        groups=groups,
    )


def caller(headers: Mapping[str, str], settings: AccessSettings) -> Actor:
    """Who is calling. Raises NotAuthenticated when this deployment accepts nobody as asked."""
    if settings.authentication_on:
        encoded = headers.get("x-ms-client-principal")
        if encoded:
            return person_from_header(encoded, settings)
        if not settings.key_only:
            raise NotAuthenticated("sign in: App Service authentication is on and this request carries no principal")
    if settings.key_only:
        return Actor(id="key:function", name="function key", kind=ActorKind.KEY, roles=settings.key_only_roles)
    raise NotAuthenticated(
        "a function key alone grants nothing: turn on App Service authentication (Entra ID app roles), or set "
        "AUTH_KEY_ONLY=true for local development"
    )


def require(actor: Actor, action: str) -> None:
    role = ACTION_ROLES[action]
    if role not in actor.roles:
        raise Forbidden(actor, action, role)
