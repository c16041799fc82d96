"""What a local stack releases under: a release policy, a signing key and signed-in people, all made
for the run (a key is never written to the repository)."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

KEY_ID = "local"


def new_signing_key() -> str:
    return secrets.token_urlsafe(32)


def write_policy(folder: Path, *, subscription: str, resource_group: str, sites: str = "*") -> Path:
    """A policy for the local stack: the site may be released by events signed with the local key,
    images from contoso.azurecr.io/web, at least two canary steps, the two-person rule on."""
    path = folder / "release-policy.yaml"
    path.write_text(
        "\n".join(
            [
                "version: 1",
                "targets:",
                "  - name: local-demo",
                f'    match: {{subscription: "{subscription}", resourceGroup: "{resource_group}", site: "{sites}"}}',
                "    sources:",
                f"      - hmac: {KEY_ID}",
                "      - people: {role: submitter}",
                "    artifacts: {registries: [contoso.azurecr.io/web]}",
                "    approvals: {twoPerson: true}",
                "    floors: {minSteps: 2, providers: [http]}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return path


def principal_header(name: str, roles: tuple[str, ...]) -> str:
    """What App Service authentication puts in X-MS-CLIENT-PRINCIPAL for a signed-in person."""
    claims = [
        {"typ": "name", "val": name},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": f"local-{name.lower()}"},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": "local"},
        *({"typ": "roles", "val": role} for role in roles),
    ]
    doc = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(doc).encode()).decode()
