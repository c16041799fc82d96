"""What may be kept of an event that was refused: never an app setting's value, nor a credential
carried in a URL (user:password@, or a query such as a SAS token)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.domain.schema import MAX_JSON_DEPTH, SchemaError, strict_json

REDACTED = "(value withheld)"
WITHHELD_BODY = b'{"withheld": "the body is not JSON this controller reads, and it may hold a secret"}'
# What makes an unreadable body unsafe to keep as received: settings, escapes that could spell them,
# and URLs that could carry credentials.
_RISKY = re.compile(rb"settings|\\u|://", re.IGNORECASE)


def _scrub_url(value: str) -> str:
    """``value`` without the credentials a URL may carry (user:password@, the query)."""
    if "://" not in value:
        return value
    try:
        url = urlsplit(value)
    except ValueError:
        return REDACTED
    if not (url.query or "@" in url.netloc):
        return value
    host = url.netloc.rsplit("@", 1)[-1]
    netloc = f"{REDACTED}@{host}" if "@" in url.netloc else host
    # Keep the names of the query's parameters (what it was), never their values (a SAS signature).
    query = "&".join(f"{part.split('=', 1)[0]}={REDACTED}" for part in url.query.split("&") if part)
    return urlunsplit((url.scheme, netloc, url.path, query, url.fragment))


def _redact(document: Any) -> Any:
    if isinstance(document, dict):
        out = {}
        for key, value in document.items():
            if key == "appSettings" and isinstance(value, dict) and value:
                out[key] = dict.fromkeys(value, REDACTED)
            else:
                out[key] = _redact(value)
        return out
    if isinstance(document, list):
        return [_redact(item) for item in document]
    if isinstance(document, str):
        return _scrub_url(document)
    return document


def redact_event(body: bytes, *, max_bytes: int) -> bytes:
    """The body to store for a refused event: its app setting values replaced. A body this
    controller cannot read as JSON is kept as received unless it mentions app settings."""
    try:
        document = strict_json(body, max_bytes=max_bytes, what="the event")
    except SchemaError:
        try:  # duplicate keys and the like: still redact what a lenient reading finds
            text = body.decode("utf-8", "replace")
            if len(text) > max_bytes or text.count("{") + text.count("[") > 10 * MAX_JSON_DEPTH * 100:
                raise ValueError
            document = json.loads(text)
        except (ValueError, RecursionError):
            return WITHHELD_BODY if _RISKY.search(body) else body
    redacted = _redact(document)
    if redacted == document:
        return body  # no app setting in it: kept byte for byte, as received
    return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
