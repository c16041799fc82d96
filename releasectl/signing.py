"""The proof an event carries (README, "Proving where an event came from"): an HMAC-SHA256
signature with a key id, or the CI pipeline's own OIDC token. Keys and tokens come from the
environment, never from flags."""

from __future__ import annotations

import os
from argparse import Namespace

import requests

from releasectl.client import CommandError
from releasectl.outcomes import Exit
from shared.authority.proofs import sign

KEY_ENV = "RELEASECTL_SIGNING_KEY"
TOKEN_ENV = "RELEASECTL_IDENTITY_TOKEN"
TIMEOUT = 30


def _github_token(audience: str) -> str:
    url, bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL"), os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not (url and bearer):
        raise CommandError(Exit.USAGE, "--oidc github: the job needs `permissions: id-token: write`")
    try:
        response = requests.get(
            url, params={"audience": audience}, headers={"Authorization": f"bearer {bearer}"}, timeout=TIMEOUT
        )
        response.raise_for_status()
        return str(response.json()["value"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise CommandError(Exit.UNREACHABLE, f"GitHub gave no identity token: {exc}") from None


def _azure_devops_token() -> str:
    url, bearer = os.environ.get("SYSTEM_OIDCREQUESTURI"), os.environ.get("SYSTEM_ACCESSTOKEN")
    if not (url and bearer):
        raise CommandError(
            Exit.USAGE, "--oidc azure-devops: map System.AccessToken into the step's env as SYSTEM_ACCESSTOKEN"
        )
    try:
        response = requests.post(
            url,
            params={"api-version": "7.1-preview.1"},
            headers={"Authorization": f"Bearer {bearer}", "Content-Length": "0"},
            timeout=TIMEOUT,
        )
        response.raise_for_status()
        return str(response.json()["oidcToken"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise CommandError(Exit.UNREACHABLE, f"Azure DevOps gave no identity token: {exc}") from None


def proof(raw: bytes, args: Namespace) -> dict[str, str]:
    """The proof for ``raw``, as Service Bus application properties (``releaseSignature`` and
    ``releaseKeyId``, or ``releaseIdentityToken``); {} when the caller asked for none."""
    if args.key_id:
        key = os.environ.get(KEY_ENV)
        if not key:
            raise CommandError(Exit.USAGE, f"--key-id {args.key_id}: set the key in {KEY_ENV}")
        return {"releaseSignature": sign(raw, key), "releaseKeyId": args.key_id}
    if args.oidc:
        if args.oidc == "github":
            if not args.oidc_audience:
                raise CommandError(Exit.USAGE, "--oidc github needs --oidc-audience (the policy issuer's audience)")
            token = _github_token(args.oidc_audience)
        elif args.oidc == "azure-devops":
            token = _azure_devops_token()
        else:  # "env": a token some other step obtained
            token = os.environ.get(TOKEN_ENV, "")
            if not token:
                raise CommandError(Exit.USAGE, f"--oidc env: put the token in {TOKEN_ENV}")
        return {"releaseIdentityToken": token}
    if args.unsigned:
        return {}
    raise CommandError(
        Exit.USAGE,
        f"the event must prove where it comes from: --key-id ID (the key in {KEY_ENV}), or --oidc"
        " github|azure-devops|env (--unsigned only over --api, as a signed-in submitter the policy allows)",
    )


HEADERS = {
    "releaseSignature": "X-Release-Signature-256",
    "releaseKeyId": "X-Release-Key-Id",
    "releaseIdentityToken": "X-Release-Identity-Token",
}


def as_headers(properties: dict[str, str]) -> dict[str, str]:
    return {HEADERS[k]: v for k, v in properties.items()}
