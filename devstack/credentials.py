"""A credential for the local emulator: any bearer token will do there. Never used against Azure."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken


class EmulatorCredential:
    def __init__(self, token: str = "local-emulator-token"):
        self.token = token
        self.scopes_asked: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_asked.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)
