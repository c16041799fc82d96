"""A local Service Bus stand-in (never deployed): an AMQP 1.0 endpoint that the real
azure-servicebus SDK talks to, serving the topic, session-enabled subscription and dead-letter
queue the controller uses, with Azure's locks, delivery counts and duplicate detection."""

from devstack.servicebus.entities import ServiceBusConfig, SubscriptionConfig, TopicConfig, release_events
from devstack.servicebus.server import ServiceBusEmulator

__all__ = ["ServiceBusConfig", "ServiceBusEmulator", "SubscriptionConfig", "TopicConfig", "release_events"]
