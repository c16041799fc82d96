"""A credential for the local emulator: unsigned JSON Web Tokens for the audience of the scope asked
for, as Entra ID would issue them (the emulator checks audience and expiry, not signatures). Never
used against Azure."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from azure.core.credentials import AccessToken


def _segment(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


class EmulatorCredential:
    def __init__(self, *, lifetime_seconds: float = 3600, audience: str | None = None):
        self.lifetime_seconds = lifetime_seconds
        self.audience = audience  # force a wrong audience in tests
        self.scopes_asked: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_asked.append(scopes)
        scope = scopes[0] if scopes else ""
        audience = self.audience or scope.removesuffix("/.default")
        expires = int(time.time() + self.lifetime_seconds)
        claims = {"aud": audience, "exp": expires, "iss": "https://sts.emulator.local/", "oid": "local-controller"}
        token = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}.emulator"
        return AccessToken(token, expires)
