"""What may be kept of an event that was refused: never an app setting's value."""

from __future__ import annotations

import json
from typing import Any

from shared.domain.schema import MAX_JSON_DEPTH, SchemaError, strict_json

REDACTED = "(value withheld)"
WITHHELD_BODY = b'{"withheld": "the body is not JSON this controller reads, and it mentions appSettings"}'


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
            return WITHHELD_BODY if b"appSettings" in body else body
    redacted = _redact(document)
    if redacted == document:
        return body  # no app setting in it: kept byte for byte, as received
    return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
