"""The namespace a stand-in serves: its topics, their subscriptions, and the shared access key.

Stands in for the entity properties set in Azure (ARM/Bicep or the portal). Every default is
Azure's: a lock lasts 60 s, a message is dead-lettered after 10 deliveries, duplicate detection
looks back 10 minutes when it is on, a Standard namespace takes messages up to 256 KiB.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Azure's defaults (Service Bus quotas and entity properties on Learn).
LOCK_DURATION_SECONDS = 60.0
MAX_DELIVERY_COUNT = 10
DUPLICATE_DETECTION_WINDOW_SECONDS = 600.0
MAX_MESSAGE_BYTES = 256 * 1024  # Standard tier; Premium allows more
# How long the service keeps a request for "the next available session" waiting when the client
# names no time-out (the service's default operation time-out).
OPERATION_TIMEOUT_SECONDS = 60.0
KEY_NAME = "RootManageSharedAccessKey"


@dataclass(frozen=True)
class SubscriptionConfig:
    name: str
    requires_session: bool = False
    lock_duration: float = LOCK_DURATION_SECONDS
    max_delivery_count: int = MAX_DELIVERY_COUNT


@dataclass(frozen=True)
class TopicConfig:
    name: str
    subscriptions: tuple[SubscriptionConfig, ...]
    requires_duplicate_detection: bool = False
    duplicate_detection_window: float = DUPLICATE_DETECTION_WINDOW_SECONDS


def _new_key() -> str:
    # An Azure key is 32 random bytes, base64.
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class ServiceBusConfig:
    topics: list[TopicConfig]
    key_name: str = KEY_NAME
    key: str = field(default_factory=_new_key)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    operation_timeout: float = OPERATION_TIMEOUT_SECONDS
    # Seconds since the epoch; real time when None. Locks and windows are measured on it.
    clock: Callable[[], float] | None = None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ServiceBusConfig:
        """Read the JSON shape of ``entities.sample.json`` (camelCase, seconds)."""
        topics = [
            TopicConfig(
                name=t["name"],
                requires_duplicate_detection=bool(t.get("requiresDuplicateDetection", False)),
                duplicate_detection_window=float(
                    t.get("duplicateDetectionWindowSeconds", DUPLICATE_DETECTION_WINDOW_SECONDS)
                ),
                subscriptions=tuple(
                    SubscriptionConfig(
                        name=s["name"],
                        requires_session=bool(s.get("requiresSession", False)),
                        lock_duration=float(s.get("lockDurationSeconds", LOCK_DURATION_SECONDS)),
                        max_delivery_count=int(s.get("maxDeliveryCount", MAX_DELIVERY_COUNT)),
                    )
                    for s in t.get("subscriptions", [])
                ),
            )
            for t in doc["topics"]
        ]
        options: dict[str, Any] = {}
        if "keyName" in doc:
            options["key_name"] = doc["keyName"]
        if "key" in doc:
            options["key"] = doc["key"]
        if "maxMessageBytes" in doc:
            options["max_message_bytes"] = int(doc["maxMessageBytes"])
        return cls(topics=topics, **options)


def release_events(
    *,
    topic: str = "release-events",
    subscription: str = "controller",
    lock_duration: float = LOCK_DURATION_SECONDS,
    max_delivery_count: int = MAX_DELIVERY_COUNT,
    duplicate_detection_window: float = DUPLICATE_DETECTION_WINDOW_SECONDS,
    **options: Any,
) -> ServiceBusConfig:
    """The controller's entities: a topic with duplicate detection and one subscription with
    sessions (the trigger's ``is_sessions_enabled``)."""
    return ServiceBusConfig(
        topics=[
            TopicConfig(
                topic,
                (SubscriptionConfig(subscription, True, lock_duration, max_delivery_count),),
                requires_duplicate_detection=True,
                duplicate_detection_window=duplicate_detection_window,
            )
        ],
        **options,
    )
