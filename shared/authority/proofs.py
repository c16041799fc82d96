"""Where a release event came from. Service Bus tells the receiver nothing about the sender, so the
event proves it, in one of two ways:

- an HMAC-SHA256 signature over the exact body, with the id of the key (several keys may be valid
  at once, for rotation; each is an app setting ``RELEASE_SIGNING_KEY_<ID>``, a Key Vault reference
  in Azure);
- a CI workload-identity token (an OIDC JWT from GitHub Actions, Azure DevOps, ...) verified against
  its issuer's published keys (JWKS, cached), audience and lifetime; its claims (repository, ref,
  environment, pipeline) are what the policy matches per target.

Over HTTP, a signed-in person with the submitter role is an origin too (the policy says whether that
person may release to the target).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.domain.model import Actor, ActorKind
from shared.domain.policy import Issuer, Origin

MAX_TOKEN_CHARS = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
JWKS_TTL_SECONDS = 3600
JWKS_REFRESH_COOLDOWN = 60
CLOCK_SKEW_SECONDS = 60
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
# Claims shown as the CI identity's name, first found wins.
NAME_CLAIMS = ("job_workflow_ref", "repository", "pipeline", "sub")


class ProofRefused(Exception):
    """The event does not prove an origin this deployment accepts; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class EventProof:
    """What came with the event: a signature and its key id, and/or a CI identity token."""

    signature: str | None = None
    key_id: str | None = None
    identity_token: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.signature or self.key_id or self.identity_token)


def sign(body: bytes, key: str) -> str:
    """The signature a publisher sends with ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OidcVerifier:
    """Verifies CI identity tokens against the issuers the policy names (their JWKS fetched over
    https, or from a loopback address for local tests, with size and time caps, cached)."""

    def __init__(self, issuers: Mapping[str, Issuer], *, ca_bundle: str | None = None, timeout: float = 5.0):
        self.issuers = dict(issuers)
        self._by_url = {i.issuer.rstrip("/"): (name, i) for name, i in self.issuers.items()}
        import requests  # lazily: the app's cold start does not pay for it

        self._session = requests.Session()
        self._session.trust_env = False
        self._session.verify = ca_bundle or True
        self._timeout = timeout
        self._keys: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _get_json(self, url: str) -> Any:
        if not (url.startswith("https://") or _loopback(url)):
            raise ProofRefused("identity token", f"the issuer's key URL {url} is not https")
        response = self._session.get(url, timeout=self._timeout, allow_redirects=False, stream=True)
        body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
        response.close()
        if response.status_code != 200 or len(body) > MAX_JWKS_BYTES:
            raise ProofRefused("identity token", f"the issuer's keys could not be read ({url}: {response.status_code})")
        try:
            return json.loads(body)
        except ValueError:
            raise ProofRefused("identity token", f"the issuer's keys at {url} are not JSON") from None

    def _key_set(self, issuer: Issuer, *, refresh: bool) -> Any:
        import jwt

        with self._lock:
            cached = self._keys.get(issuer.issuer)
            now = time.monotonic()
            fresh_enough = cached and (now - cached[0] < JWKS_TTL_SECONDS)
            cooling = cached and (now - cached[0] < JWKS_REFRESH_COOLDOWN)
            if cached and ((fresh_enough and not refresh) or cooling):
                return cached[1]
        discovery = self._get_json(issuer.issuer.rstrip("/") + "/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
        if not isinstance(jwks_uri, str):
            raise ProofRefused("identity token", f"{issuer.issuer} publishes no jwks_uri")
        try:
            key_set = jwt.PyJWKSet.from_dict(self._get_json(jwks_uri))
        except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError, KeyError) as exc:
            raise ProofRefused("identity token", f"the issuer's keys cannot be used: {exc}") from None
        with self._lock:
            self._keys[issuer.issuer] = (time.monotonic(), key_set)
        return key_set

    def verify(self, token: str) -> tuple[str, dict[str, Any]]:
        """(issuer name in the policy, verified claims). Raises ProofRefused saying why not."""
        import jwt

        if len(token) > MAX_TOKEN_CHARS:
            raise ProofRefused("identity token", "is too long")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise ProofRefused("identity token", "is not a JSON Web Token") from None
        found = self._by_url.get(str(unverified.get("iss", "")).rstrip("/"))
        if found is None:
            raise ProofRefused("identity token", f"its issuer {unverified.get('iss')!r} is not one the policy trusts")
        name, issuer = found
        if header.get("alg") not in ALGORITHMS:
            raise ProofRefused("identity token", f"is signed with {header.get('alg')!r}, not an accepted algorithm")
        kid = header.get("kid")
        key = None
        for refresh in (False, True):  # an unknown key id may be a key the issuer just rotated in
            key_set = self._key_set(issuer, refresh=refresh)
            key = next((k for k in key_set.keys if k.key_id == kid), None)
            if key is not None:
                break
        if key is None:
            raise ProofRefused("identity token", f"is signed with key {kid!r}, which {issuer.issuer} does not publish")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise ProofRefused("identity token", "has expired") from None
        except jwt.InvalidAudienceError:
            raise ProofRefused(
                "identity token", f"is not for this controller (audience must be {issuer.audience})"
            ) from None
        except jwt.PyJWTError as exc:
            raise ProofRefused("identity token", f"is not valid: {exc}") from None
        return name, claims


class EventVerifier:
    """Turns what came with an event into its origin, or refuses it."""

    def __init__(self, signing_keys: Mapping[str, str], oidc: OidcVerifier | None):
        self.signing_keys = dict(signing_keys)
        self.oidc = oidc

    def origin(self, body: bytes, proof: EventProof, caller: Actor | None = None) -> Origin:
        """The verified origin: the CI token's identity, else the signing key, else the person who
        sent it over HTTP. Raises ProofRefused."""
        if proof.identity_token:
            if self.oidc is None:
                raise ProofRefused("identity token", "the policy trusts no CI issuer")
            issuer, claims = self.oidc.verify(proof.identity_token)
            subject = str(claims.get("sub", ""))
            name = next((str(claims[c]) for c in NAME_CLAIMS if claims.get(c)), subject)
            text_claims = {k: str(v) for k, v in claims.items() if isinstance(v, (str, int, bool))}
            actor = Actor(id=f"oidc:{issuer}:{subject}", name=name[:200], kind=ActorKind.CI)
            return Origin(actor, issuer=issuer, claims=text_claims)
        if proof.signature or proof.key_id:
            if not (proof.signature and proof.key_id):
                raise ProofRefused("signature", "a signature needs its key id, and a key id its signature")
            key = self.signing_keys.get(proof.key_id)
            if key is None:
                raise ProofRefused("key id", f"{proof.key_id!r} is not a signing key of this controller")
            if not hmac.compare_digest(sign(body, key), proof.signature.strip()):
                raise ProofRefused("signature", f"does not match the body for key {proof.key_id!r}")
            actor = Actor(id=f"hmac:{proof.key_id}", name=f"signing key {proof.key_id}", kind=ActorKind.CI)
            return Origin(actor, key_id=proof.key_id)
        if caller is not None:
            return Origin(caller)
        raise ProofRefused(
            "signature", "the event is not signed: send a signature and key id, or a CI identity token (README)"
        )
