"""The controller's HTTP API, as releasectl calls it.

Authentication, as the deployment asks for it: a function key from an environment variable (never
a flag: flags end up in logs), and, when App Service authentication is on, an Entra ID token for
the app's audience from azure-identity (the pipeline's workload identity, a managed identity, or the
developer's `az login`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from releasectl.outcomes import Exit

KEY_ENV = "RELEASECTL_FUNCTION_KEY"
AUDIENCE_ENV = "RELEASECTL_AUDIENCE"
# Only for the local stack, which has no App Service authentication in front of it: the principal
# App Service would have passed (the demo prints one). Never honoured by a deployed controller.
LOCAL_PRINCIPAL_ENV = "RELEASECTL_LOCAL_PRINCIPAL"


class CommandError(Exception):
    """The command cannot do what it was asked; ``code`` is the exit code, ``problem`` what the
    controller answered (problem+json), if it did."""

    def __init__(self, code: Exit, message: str, problem: dict[str, Any] | None = None):
        self.code, self.problem = code, problem
        super().__init__(message)


@dataclass
class Api:
    url: str
    audience: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.url.endswith("/api"):
            self.url += "/api"
        self._session = requests.Session()
        self._credential: Any = None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        key = os.environ.get(KEY_ENV)
        if key:
            headers["x-functions-key"] = key
        audience = self.audience or os.environ.get(AUDIENCE_ENV)
        if audience:
            headers["Authorization"] = f"Bearer {self._token(audience)}"
        principal = os.environ.get(LOCAL_PRINCIPAL_ENV)
        if principal:
            headers["x-ms-client-principal"] = principal
        return headers

    def _token(self, audience: str) -> str:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import DefaultAzureCredential

        if self._credential is None:
            self._credential = DefaultAzureCredential()
        scope = audience if audience.endswith("/.default") else audience.rstrip("/") + "/.default"
        try:
            return str(self._credential.get_token(scope).token)
        except ClientAuthenticationError as exc:
            raise CommandError(Exit.USAGE, f"no Entra ID token for {scope}: {exc.message}") from None

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """The JSON answer. Raises CommandError with the exit code the answer means."""
        sent = self._headers()
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        try:
            response = self._session.request(
                method, self.url + path, data=body, params=params, headers=sent, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise CommandError(Exit.UNREACHABLE, f"the controller at {self.url} could not be reached: {exc}") from None
        if response.status_code == 404 and missing_ok:
            return None
        try:
            doc = response.json() if response.content else None
        except ValueError:
            doc = None
        if response.status_code < 400:
            return doc
        problem = doc if isinstance(doc, dict) else None
        detail = (problem or {}).get("detail") or response.reason
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in (problem or {}).get("errors") or [])
        message = f"{method} {path}: {response.status_code} {detail}" + (f" ({fields})" if fields else "")
        if response.status_code in (502, 503, 504):
            raise CommandError(Exit.UNREACHABLE, message, problem)
        if response.status_code in (400, 401, 403, 409, 413, 415, 422):
            raise CommandError(Exit.REJECTED, message, problem)
        raise CommandError(Exit.UNREACHABLE if response.status_code >= 500 else Exit.REJECTED, message, problem)

    # -- the routes -------------------------------------------------------------------------------

    def release(self, release_id: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        return self.call("GET", f"/releases/{quote(release_id, safe='')}", missing_ok=missing_ok)

    def audit(self, release_id: str) -> list[dict[str, Any]]:
        doc = self.call("GET", f"/releases/{quote(release_id, safe='')}/audit") or {}
        return list(doc.get("entries") or [])

    def releases(self, **query: Any) -> dict[str, Any]:
        return dict(self.call("GET", "/releases", params={k: v for k, v in query.items() if v is not None}) or {})

    def rejections(self, day: str | None = None, limit: int | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("day", day), ("limit", limit)) if v is not None}
        return dict(self.call("GET", "/rejections", params=params) or {})

    def policy(self) -> dict[str, Any]:
        return dict(self.call("GET", "/policy") or {})

    def submit(self, raw: bytes, proof_headers: dict[str, str]) -> dict[str, Any]:
        return dict(self.call("POST", "/releases", body=raw, headers=proof_headers) or {})

    def override(self, release_id: str, action: str, reason: str) -> dict[str, Any]:
        body = json.dumps({"reason": reason}).encode()
        return dict(self.call("POST", f"/releases/{quote(release_id, safe='')}/{action}", body=body) or {})

    def redeploy(self, site_key: str, to: dict[str, str], reason: str) -> dict[str, Any]:
        body = json.dumps({"to": to, "reason": reason}).encode()
        return dict(self.call("POST", f"/sites/{quote(site_key, safe='~')}/redeploy", body=body) or {})

    def quarantine(self) -> dict[str, Any]:
        return dict(self.call("GET", "/quarantine") or {})

    def lift_quarantine(self, site_key: str, version: str, reason: str) -> dict[str, Any]:
        body = json.dumps({"reason": reason}).encode()
        path = f"/sites/{quote(site_key, safe='~')}/quarantine/{quote(version, safe='')}/lift"
        return dict(self.call("POST", path, body=body) or {})

    def control(self, action: str | None = None, reason: str | None = None) -> dict[str, Any]:
        if action is None:
            return dict(self.call("GET", "/control") or {})
        return dict(self.call("POST", f"/control/{action}", body=json.dumps({"reason": reason}).encode()) or {})

    def submit_rollout(self, raw: bytes, proof_headers: dict[str, str]) -> dict[str, Any]:
        return dict(self.call("POST", "/rollouts", body=raw, headers=proof_headers) or {})

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/rollouts/{quote(rollout_id, safe='')}") or {})
