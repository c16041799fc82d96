"""Publishing a release event on Service Bus, as the controller expects it: message id = release id
(duplicate detection), session id = the site (one site's events in order), content type JSON, the
proof in the application properties. The connection string comes from the environment (never a
flag); with ``--namespace`` the credential is azure-identity's DefaultAzureCredential."""

from __future__ import annotations

import os

from releasectl.client import CommandError
from releasectl.outcomes import Exit

CONNECTION_ENV = "RELEASECTL_SERVICEBUS_CONNECTION"


def send(
    raw: bytes,
    *,
    release_id: str,
    session_id: str,
    properties: dict[str, str],
    topic: str,
    namespace: str | None,
    timeout: float,
) -> None:
    from azure.core.exceptions import AzureError
    from azure.servicebus import ServiceBusClient, ServiceBusMessage
    from azure.servicebus.exceptions import ServiceBusError

    connection = os.environ.get(CONNECTION_ENV)
    if namespace:
        from azure.identity import DefaultAzureCredential

        fqdn = namespace if "." in namespace else f"{namespace}.servicebus.windows.net"
        client = ServiceBusClient(fqdn, DefaultAzureCredential(), retry_total=2)
    elif connection:
        client = ServiceBusClient.from_connection_string(connection, retry_total=2)
    else:
        raise CommandError(Exit.USAGE, f"Service Bus: give --namespace, or a connection string in {CONNECTION_ENV}")
    message = ServiceBusMessage(
        raw,
        message_id=release_id,
        session_id=session_id,
        content_type="application/json",
        application_properties=dict(properties),
    )
    try:
        with client, client.get_topic_sender(topic) as sender:
            sender.send_messages(message, timeout=timeout)
    except (ServiceBusError, AzureError, OSError) as exc:
        raise CommandError(Exit.UNREACHABLE, f"Service Bus did not take the event: {exc}") from None
