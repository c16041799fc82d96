"""Checks a shared access signature the way Service Bus does when a client puts it on ``$cbs``.

``SharedAccessSignature sr=<url-encoded resource>&sig=<signature>&se=<expiry>&skn=<key name>``,
where the signature is base64(HMAC-SHA256(key, <url-encoded resource> + "\\n" + <expiry>)). The
resource must cover the entity the token is put for (a namespace token covers every entity);
the key name must be the configured one; an expired token is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import unquote_plus

PREFIX = "SharedAccessSignature "


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: the entities under ``resource`` until ``expires_at``."""

    resource: str
    expires_at: float

    def covers(self, entity: str, now: float) -> bool:
        return now < self.expires_at and (
            entity == self.resource or not self.resource or entity.startswith(self.resource + "/")
        )


class TokenRefused(Exception):
    """Why a token is not accepted, in the words Service Bus uses (``InvalidSignature: ...``)."""


def _host_and_path(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    host, _, path = rest.partition("/")
    return host.lower(), path.strip("/").lower()


def check_token(token: str, *, audience: str, key_name: str, key: str, now: float) -> Grant:
    """The grant a token put for ``audience`` gives, or ``TokenRefused``."""
    if not token.startswith(PREFIX):
        raise TokenRefused(
            "InvalidToken: the Service Bus stand-in accepts shared access signatures only "
            "(SharedAccessSignature sr=...&sig=...&se=...&skn=...), not Microsoft Entra ID tokens"
        )
    raw: dict[str, str] = {}
    for part in token[len(PREFIX) :].split("&"):
        name, _, value = part.partition("=")
        raw[name] = value
    missing = [name for name in ("sr", "sig", "se", "skn") if not raw.get(name)]
    if missing:
        raise TokenRefused(f"InvalidToken: the token has no {', '.join(missing)}")
    if unquote_plus(raw["skn"]) != key_name:
        raise TokenRefused(f"InvalidSignature: the namespace has no shared access policy {unquote_plus(raw['skn'])!r}")
    try:
        expiry = int(raw["se"])
    except ValueError:
        raise TokenRefused("InvalidToken: se is not a number of seconds") from None
    # The signature covers the resource exactly as it appears (url-encoded) in the token.
    expected = base64.b64encode(
        hmac.new(key.encode(), f"{raw['sr']}\n{expiry}".encode(), hashlib.sha256).digest()
    ).decode()
    if not hmac.compare_digest(expected, unquote_plus(raw["sig"])):
        raise TokenRefused("InvalidSignature: The token has an invalid signature.")
    if expiry <= now:
        raise TokenRefused(f"ExpiredToken: The token is expired. Expiration time: {expiry}.")
    resource_host, resource = _host_and_path(unquote_plus(raw["sr"]))
    audience_host, entity = _host_and_path(audience)
    if resource_host != audience_host or not Grant(resource, float(expiry)).covers(entity, now):
        raise TokenRefused(f"InvalidAudience: the token for {unquote_plus(raw['sr'])} does not cover {audience}")
    return Grant(resource, float(expiry))
