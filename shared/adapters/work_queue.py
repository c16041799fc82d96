"""The work queue on Azure Storage queues (Azurite's queue service locally).

One message names one due release (``DueRef``) as JSON; a message scheduled for a release's due
time is sent with that much initial invisibility (at most 7 days, the service's limit). Messages
are base64 text, the encoding the Functions queue trigger reads by default. The SDK is imported
when a queue is first built, never at app import.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from shared.adapters.codec import iso, parse_iso
from shared.ports import DueRef

# Azure Storage queues: a message may stay invisible for at most 7 days.
MAX_VISIBILITY_SECONDS = 7 * 86400 - 60
MAX_MESSAGE_BYTES = 48 * 1024


class BadWorkMessage(ValueError):
    """A work message this controller did not write (or a corrupt one): dropped, never retried."""


def encode(ref: DueRef) -> str:
    return json.dumps(
        {"releaseId": ref.release_id, "siteKey": ref.site_key, "dueAt": iso(ref.due_at), "row": ref.row},
        separators=(",", ":"),
    )


def decode(body: bytes | str) -> DueRef:
    """The ``DueRef`` a message carries. Raises BadWorkMessage naming what is wrong."""
    if isinstance(body, bytes):
        if len(body) > MAX_MESSAGE_BYTES:
            raise BadWorkMessage("the message is larger than any this controller sends")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadWorkMessage("the message is not UTF-8 text") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise BadWorkMessage("the message is not JSON") from None
    if not isinstance(doc, dict):
        raise BadWorkMessage("the message is not a JSON object")
    release_id, site_key, row, due = doc.get("releaseId"), doc.get("siteKey"), doc.get("row"), doc.get("dueAt")
    for name, value in (("releaseId", release_id), ("siteKey", site_key)):
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise BadWorkMessage(f"{name} must be a non-empty string")
    if row is not None and (not isinstance(row, str) or len(row) > 1024):
        raise BadWorkMessage("row must be a string")
    try:
        due_at = parse_iso(due) if isinstance(due, str) else None
    except ValueError:
        due_at = None
    if due_at is None or due_at.tzinfo is None:
        raise BadWorkMessage("dueAt must be an ISO 8601 time with its zone")
    return DueRef(release_id, site_key, due_at, row)


class StorageWorkQueue:
    def __init__(self, client: Any):
        self._client = client
        self._created = False

    @classmethod
    def from_connection_string(cls, conn: str, queue: str, **kw: Any) -> StorageWorkQueue:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        return cls(
            QueueClient.from_connection_string(
                conn,
                queue,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
                **kw,
            )
        )

    @classmethod
    def from_endpoint(cls, account_url: str, queue: str, credential: Any, **kw: Any) -> StorageWorkQueue:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        return cls(
            QueueClient(
                account_url,
                queue,
                credential=credential,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
                **kw,
            )
        )

    @property
    def client(self) -> Any:
        return self._client

    def ensure(self) -> None:
        """Create the queue if it is missing (the infrastructure normally has)."""
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self._client.create_queue()
        self._created = True

    def depth(self) -> int:
        """Messages in the queue, visible or not (Azure's approximate count)."""
        return int(self._client.get_queue_properties().approximate_message_count or 0)

    def send(self, ref: DueRef, *, delay_seconds: float = 0.0) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        visibility = min(MAX_VISIBILITY_SECONDS, max(0, math.ceil(delay_seconds)))
        # time_to_live=-1: a message never expires unseen; the worker drops it if it is stale.
        try:
            self._client.send_message(encode(ref), visibility_timeout=visibility, time_to_live=-1)
        except ResourceNotFoundError:
            if self._created:
                raise
            self.ensure()
            self._client.send_message(encode(ref), visibility_timeout=visibility, time_to_live=-1)


__all__ = ["BadWorkMessage", "StorageWorkQueue", "decode", "encode"]
