"""How the release store lays out its rows in Table Storage: keys, chunked text, size guards, the
listing cursor. Pure functions of values; the store (``table_store.py``) does the I/O."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from shared.adapters.codec import parse_iso
from shared.domain.model import Phase
from shared.ports import EntityTooLarge, ReleaseSummary

MAX_BATCH_OPERATIONS = 100
MAX_STRING_UTF16_UNITS = 32 * 1024
# Azure measures the 1 MiB entity limit on its own encoding; stay well below it.
MAX_ENTITY_BYTES = 900 * 1024
TEXT_CHUNK_CHARS = MAX_STRING_UTF16_UNITS // 2  # any 16,384 characters fit in 32,768 UTF-16 units
BINARY_CHUNK_BYTES = 64 * 1024
MAX_REJECTED_BODY_BYTES = 640 * 1024
MAX_MESSAGE_CHARS = 8000
INVERTED_BASE = 10**13


def table_key(value: str) -> str:
    """A PartitionKey/RowKey-safe form: '/', '\\', '#', '?', '%' and control characters escaped."""
    out = []
    for ch in value:
        if ch in "/\\#?%" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def release_row_key(release_id: str, created_at: datetime) -> str:
    inverted = INVERTED_BASE - int(created_at.timestamp() * 1000)
    return f"release|{inverted:013d}|{table_key(release_id)}"


def millis(at: datetime) -> int:
    return max(0, int(at.timestamp() * 1000))


def due_row_key(release_id: str, due_at: datetime) -> str:
    return f"due|{millis(due_at):013d}|{table_key(release_id)}"


def measurement_row_key(release_id: str, seq: int) -> str:
    return f"evidence|{table_key(release_id)}|{seq:010d}"


def audit_row_key(release_id: str, seq: int) -> str:
    return f"audit|{table_key(release_id)}|{seq:010d}"


def put_text(entity: dict[str, Any], name: str, text: str) -> None:
    chunks = [text[i : i + TEXT_CHUNK_CHARS] for i in range(0, len(text), TEXT_CHUNK_CHARS)] or [""]
    entity[f"{name}Chunks"] = len(chunks)
    for index, chunk in enumerate(chunks):
        entity[f"{name}{index}"] = chunk


def get_text(entity: dict[str, Any], name: str) -> str:
    return "".join(entity[f"{name}{i}"] for i in range(int(entity[f"{name}Chunks"])))


def short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def entity_size(entity: dict[str, Any]) -> int:
    """Bytes the entity takes on the wire, counted the way Azure counts (strings as UTF-16)."""
    size = 4
    for name, value in entity.items():
        size += 8 + 2 * len(name)
        if isinstance(value, str):
            size += 4 + len(value.encode("utf-16-le"))
        elif isinstance(value, (bytes, bytearray)):
            size += 4 + len(value)
        else:
            size += 8
    return size


def guard(entity: dict[str, Any]) -> dict[str, Any]:
    for name, value in entity.items():
        if isinstance(value, str) and len(value.encode("utf-16-le")) // 2 > MAX_STRING_UTF16_UNITS:
            raise EntityTooLarge(f"property {name} is longer than {MAX_STRING_UTF16_UNITS} UTF-16 units")
    size = entity_size(entity)
    if size > MAX_ENTITY_BYTES:
        raise EntityTooLarge(f"row {entity.get('RowKey')} would be {size} bytes; the limit used is {MAX_ENTITY_BYTES}")
    return entity


def table_missing(exc: Exception) -> bool:
    # error_code is a str, or a str enum whose str() is its name: compare, do not format.
    return getattr(exc, "error_code", None) == "TableNotFound"


def summary(row: dict[str, Any]) -> ReleaseSummary:
    created = parse_iso(row["CreatedAt"])
    assert created is not None
    return ReleaseSummary(
        release_id=row["ReleaseId"],
        site_key=row["PartitionKey"],
        subscription_id=row["SubscriptionId"],
        resource_group=row["ResourceGroup"],
        site=row["Site"],
        slot=row["Slot"],
        version=row["Version"],
        phase=Phase(row["Phase"]),
        paused=bool(row["Paused"]),
        weight=float(row["Weight"]),
        created_at=created,
        updated_at=parse_iso(row.get("UpdatedAt")),
    )


def encode_cursor(token: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, str] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        token = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(token, dict) or not set(token) <= {"PartitionKey", "RowKey"}:
            raise ValueError
        return {k: str(v) for k, v in token.items()}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this API handed out") from exc
