"""The dashboard's buttons: which overrides a viewer may press now, and the proof that a form
was sent from the dashboard itself (cross-site request forgery).

Two checks, both required: the browser's own word that the request comes from this site
(``Sec-Fetch-Site: same-origin``, or an ``Origin`` equal to the host), and a token in the form,
bound to the person and the release and signed with the deployment's key, that expires."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from shared.authority.principals import ACTION_ROLES
from shared.domain.lifecycle.overrides import override_refusal
from shared.domain.model import Actor, OverrideKind, Release

TOKEN_LIFETIME_SECONDS = 4 * 3600
MAX_FORM_BYTES = 8 * 1024

# What each button says, in the order they are shown.
BUTTONS: dict[OverrideKind, str] = {
    OverrideKind.APPROVE: "Approve",
    OverrideKind.PROMOTE: "Promote this step",
    OverrideKind.PROMOTE_FULL: "Promote fully",
    OverrideKind.PAUSE: "Pause",
    OverrideKind.RESUME: "Resume",
    OverrideKind.ROLLBACK: "Roll back",
    OverrideKind.RETRY: "Retry",
    OverrideKind.RELEASE_SITE: "Free the site",
    OverrideKind.IGNORE_SCHEDULE: "Ignore the schedule",
}

_process_key = secrets.token_bytes(32)


class FormRefused(Exception):
    """Not a form this dashboard handed out, or not sent by it: 403."""


@dataclass(frozen=True)
class Button:
    action: str
    label: str
    danger: bool


def buttons(release: Release, actor: Actor, now: datetime) -> list[Button]:
    """The overrides ``actor`` holds the role for and the release allows now."""
    shown = []
    for kind, label in BUTTONS.items():
        if ACTION_ROLES[kind.value] not in actor.roles:
            continue
        if override_refusal(release, kind, now, actor) is not None:
            continue
        if kind is OverrideKind.IGNORE_SCHEDULE and release.held is None:
            continue  # offered only while the schedule holds the release
        shown.append(Button(kind.value, label, kind in (OverrideKind.ROLLBACK, OverrideKind.RELEASE_SITE)))
    return shown


def _key(secret: str | None) -> bytes:
    return secret.encode() if secret else _process_key


def _mac(key: bytes, actor_id: str, release_id: str, issued: int) -> str:
    message = f"{actor_id}\n{release_id}\n{issued}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def token(secret: str | None, actor: Actor, release_id: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(_key(secret), actor.id, release_id, issued)}"


def check_token(secret: str | None, actor: Actor, release_id: str, value: str, now: float | None = None) -> None:
    issued_text, _, mac = value.partition(".")
    if not issued_text.isdigit() or len(mac) != 64:
        raise FormRefused("the form carries no dashboard token: reload the page and try again")
    issued = int(issued_text)
    current = time.time() if now is None else now
    if not hmac.compare_digest(mac, _mac(_key(secret), actor.id, release_id, issued)):
        raise FormRefused("the form's token is not this dashboard's for you and this release: reload the page")
    if not issued - 60 <= current <= issued + TOKEN_LIFETIME_SECONDS:
        raise FormRefused("the form has expired: reload the page and try again")


def check_same_origin(headers: Mapping[str, str]) -> None:
    """The browser says the form was sent from this site. Requests without either header (not a
    browser's form) use the JSON API instead."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site != "same-origin":
            raise FormRefused(f"the form was sent from another site ({site}); only the dashboard's own pages may")
        return
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host:
        raise FormRefused("the request does not say where it comes from: use the dashboard in a browser, or the API")
    if urlsplit(origin).netloc.lower() != host.lower():
        raise FormRefused("the form was sent from another site; only the dashboard's own pages may")


def parse_form(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body: each field's last value."""
    if len(body) > MAX_FORM_BYTES:
        raise ValueError(f"the form is {len(body)} bytes; the limit is {MAX_FORM_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the form is not UTF-8") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True, max_num_fields=20).items()}
