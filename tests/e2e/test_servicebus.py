"""The Service Bus stand-in, driven only through the real azure-servicebus SDK over AMQP on
127.0.0.1, and the local Functions host receiving the release trigger's messages from it.

Every SDK call has a bound (``max_wait_time``, ``timeout``, ``retry_total=0``) and a watchdog ends
the test process if one ever hangs anyway: a peer that stops answering can make pyamqp wait
forever. Locks and windows are shortened per test; their defaults are Azure's."""

from __future__ import annotations

import faulthandler
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from azure.core.credentials import AzureSasCredential
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from devstack.servicebus import ServiceBusConfig, ServiceBusEmulator, SubscriptionConfig, TopicConfig, release_events

TOPIC, SUBSCRIPTION_NAME = "release-events", "controller"
WAIT = 3  # seconds a receive may wait for what it expects
NOTHING = 0.5  # seconds a receive on an open link waits to show that nothing is there


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Ends the run with every thread's stack if a test hangs (pyamqp has no overall deadline)."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def client(bus: ServiceBusEmulator) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(bus.connection_string, retry_total=0)


def send(bus: ServiceBusEmulator, *messages: ServiceBusMessage) -> None:
    with client(bus) as sb, sb.get_topic_sender(TOPIC) as sender:
        for message in messages:
            sender.send_messages(message, timeout=5)


def session_receiver(
    sb: ServiceBusClient, session_id: object = NEXT_AVAILABLE_SESSION, wait: float = WAIT
) -> ServiceBusReceiver:
    return sb.get_subscription_receiver(TOPIC, SUBSCRIPTION_NAME, session_id=session_id, max_wait_time=wait)


def receive(receiver: ServiceBusReceiver, count: int = 10, wait: float = WAIT) -> list:
    return receiver.receive_messages(max_message_count=count, max_wait_time=wait)


def body(message) -> bytes:
    return b"".join(message.body)


def until(predicate: Callable[[], object], what: str, timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")


# -- the namespace, through the SDK ----------------------------------------------------------------


def test_a_message_keeps_its_id_session_content_type_properties_and_body_end_to_end():
    with ServiceBusEmulator() as bus:
        before = datetime.now(UTC).replace(microsecond=0)
        send(
            bus,
            ServiceBusMessage(
                b'{"releaseId": "web-1.4.2"}',
                message_id="web-1.4.2",
                session_id="sub/rg/site",
                content_type="application/json",
                application_properties={"releaseKeyId": "ci", "attempt": 3},
            ),
        )
        with client(bus) as sb, session_receiver(sb) as receiver:
            (message,) = receive(receiver)
            assert receiver.session.session_id == "sub/rg/site"
            assert receiver.session.locked_until_utc > datetime.now(UTC)
            assert body(message) == b'{"releaseId": "web-1.4.2"}'
            assert (message.message_id, message.session_id, message.content_type) == (
                "web-1.4.2",
                "sub/rg/site",
                "application/json",
            )
            # pyamqp hands application properties over as the wire has them: keys and strings as bytes.
            assert message.application_properties == {b"releaseKeyId": b"ci", b"attempt": 3}
            # The AMQP header counts earlier deliveries (Azure's .NET SDK and the Functions host add one).
            assert message.delivery_count == 0
            assert message.sequence_number == 1 and message.enqueued_time_utc >= before
            receiver.complete_message(message)
            assert receive(receiver, wait=NOTHING) == []


def test_a_duplicate_message_id_is_accepted_and_dropped_within_the_window_only():
    with ServiceBusEmulator(release_events(duplicate_detection_window=0.5)) as bus, client(bus) as sb:
        with sb.get_topic_sender(TOPIC) as sender:
            for n in range(3):
                sender.send_messages(ServiceBusMessage(f"try {n}", message_id="web-1", session_id="s"), timeout=5)
            time.sleep(0.6)
            sender.send_messages(ServiceBusMessage("after the window", message_id="web-1", session_id="s"), timeout=5)
        with session_receiver(sb, "s") as receiver:
            assert [body(m) for m in receive(receiver)] == [b"try 0", b"after the window"]


def test_a_session_is_locked_to_one_receiver_which_gets_its_messages_in_order():
    with ServiceBusEmulator() as bus:
        batch = [ServiceBusMessage(f"a{n}", session_id="a") for n in range(5)]  # sent as one batch
        send(bus, batch, ServiceBusMessage("b0", session_id="b"))
        with client(bus) as sb, session_receiver(sb, "a") as first:
            assert [body(m) for m in receive(first)] == [b"a0", b"a1", b"a2", b"a3", b"a4"]
            with pytest.raises(SessionCannotBeLockedError), session_receiver(sb, "a") as second:
                receive(second)
            with session_receiver(sb) as other:  # the next available session is the other one
                (message,) = receive(other)
                assert (other.session.session_id, body(message)) == ("b", b"b0")
                other.complete_message(message)
            with pytest.raises(OperationTimeoutError), session_receiver(sb, wait=1) as nothing_left:
                receive(nothing_left)


def test_session_state_lock_renewal_and_peek_go_through_the_management_link():
    with ServiceBusEmulator() as bus:
        send(bus, ServiceBusMessage("one", session_id="s"), ServiceBusMessage("two", session_id="s"))
        with client(bus) as sb, session_receiver(sb, "s") as receiver:
            assert [body(m) for m in receiver.peek_messages(max_message_count=5, timeout=5)] == [b"one", b"two"]
            assert receiver.session.get_state(timeout=5) is None
            receiver.session.set_state(b"step 2", timeout=5)
            assert receiver.session.get_state(timeout=5) == b"step 2"
            before = receiver.session.locked_until_utc
            time.sleep(0.05)
            assert receiver.session.renew_lock(timeout=5) > before


def test_an_abandoned_message_comes_back_with_its_delivery_count_raised():
    with ServiceBusEmulator() as bus:
        send(bus, ServiceBusMessage("flaky", session_id="s"))
        with client(bus) as sb, session_receiver(sb, "s") as receiver:
            (first,) = receive(receiver)
            receiver.abandon_message(first)
            (again,) = receive(receiver)
            assert (body(again), again.delivery_count) == (b"flaky", first.delivery_count + 1)
            assert again.lock_token != first.lock_token


def test_after_the_max_delivery_count_a_message_is_dead_lettered_and_readable_from_the_sub_queue():
    with ServiceBusEmulator(release_events(max_delivery_count=3)) as bus:
        send(bus, ServiceBusMessage("poison", session_id="s"), ServiceBusMessage("refused", session_id="s"))
        with client(bus) as sb:
            with session_receiver(sb, "s") as receiver:
                poison, refused = receive(receiver, 2)
                receiver.dead_letter_message(refused, reason="InvalidEvent", error_description="no target")
                counts = [poison.delivery_count]
                receiver.abandon_message(poison)
                for _ in range(2):
                    (poison,) = receive(receiver, 1)
                    counts.append(poison.delivery_count)
                    receiver.abandon_message(poison)
                assert counts == [0, 1, 2]  # three deliveries, then the third abandon dead-letters it
                assert receive(receiver, wait=NOTHING) == []
            dead_letters = sb.get_subscription_receiver(
                TOPIC, SUBSCRIPTION_NAME, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=WAIT
            )
            with dead_letters:
                found = {body(m): m for m in receive(dead_letters)}
                assert set(found) == {b"poison", b"refused"}
                assert found[b"refused"].dead_letter_reason == "InvalidEvent"
                assert found[b"refused"].dead_letter_error_description == "no target"
                assert found[b"poison"].dead_letter_reason == "MaxDeliveryCountExceeded"
                assert "3 delivery attempts" in found[b"poison"].dead_letter_error_description
                for message in found.values():
                    dead_letters.complete_message(message)
                assert receive(dead_letters, wait=NOTHING) == []


def test_when_a_session_lock_expires_the_receiver_loses_it_and_the_message_comes_back_counted():
    with ServiceBusEmulator(release_events(lock_duration=1.0)) as bus:
        send(bus, ServiceBusMessage("slow", session_id="s"))
        with client(bus) as sb:
            with session_receiver(sb, "s") as slow:
                (held,) = receive(slow)
                time.sleep(1.2)
                with pytest.raises(SessionLockLostError):
                    slow.complete_message(held)
            with session_receiver(sb, "s") as next_one:
                (again,) = receive(next_one)
                assert (body(again), again.delivery_count) == (b"slow", 1)
                next_one.complete_message(again)


def test_when_a_message_lock_expires_on_a_subscription_without_sessions_the_message_comes_back_counted():
    config = ServiceBusConfig(
        [TopicConfig("audit", (SubscriptionConfig("all", lock_duration=1.0),))],
    )
    with ServiceBusEmulator(config) as bus, client(bus) as sb:
        with sb.get_topic_sender("audit") as sender:
            sender.send_messages(ServiceBusMessage("entry"), timeout=5)
        with sb.get_subscription_receiver("audit", "all", max_wait_time=WAIT) as receiver:
            (held,) = receive(receiver)
            time.sleep(1.2)
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(held)
            (again,) = receive(receiver)
            assert (body(again), again.delivery_count) == (b"entry", 1)
            before = again.locked_until_utc
            time.sleep(0.05)
            assert receiver.renew_message_lock(again, timeout=5) > before
            receiver.complete_message(again)


def test_a_wrong_key_or_an_expired_token_is_refused_as_an_authentication_error():
    from azure.servicebus._pyamqp.utils import generate_sas_token

    with ServiceBusEmulator() as bus:
        wrong = bus.connection_string.replace("SharedAccessKey=", "SharedAccessKey=x")
        with (
            ServiceBusClient.from_connection_string(wrong, retry_total=0) as sb,
            pytest.raises(ServiceBusAuthenticationError),
        ):
            sb.get_topic_sender(TOPIC).send_messages(ServiceBusMessage("x", session_id="s"), timeout=5)
        namespace = bus.fully_qualified_namespace
        expired = generate_sas_token(f"sb://{namespace}/{TOPIC}", bus.config.key_name, bus.config.key, time.time() - 1)
        with (
            ServiceBusClient(namespace, AzureSasCredential(expired), use_tls=False, retry_total=0) as sb,
            pytest.raises(ServiceBusAuthenticationError),
        ):
            sb.get_topic_sender(TOPIC).send_messages(ServiceBusMessage("x", session_id="s"), timeout=5)


def test_what_the_stand_in_does_not_implement_fails_loudly():
    with ServiceBusEmulator() as bus, client(bus) as sb:
        with sb.get_topic_sender(TOPIC) as sender, pytest.raises(ServiceBusError, match="schedule-message"):
            sender.schedule_messages(ServiceBusMessage("later", session_id="s"), datetime.now(UTC), timeout=5)
        with session_receiver(sb, "s") as receiver, pytest.raises(ServiceBusError, match="receive-by-sequence"):
            receiver.receive_deferred_messages([1], timeout=5)
        with sb.get_topic_sender(TOPIC) as sender, pytest.raises(ServiceBusError, match="scheduled for later"):
            later = ServiceBusMessage("later", session_id="s", scheduled_enqueue_time_utc=datetime.now(UTC))
            sender.send_messages(later, timeout=5)  # never delivered at once, as if it had not been scheduled
        with sb.get_topic_sender(TOPIC) as sender, pytest.raises(ServiceBusError, match="session id"):
            sender.send_messages(ServiceBusMessage("no session"), timeout=5)  # the subscription requires one


# -- the local Functions host, receiving from the stand-in ------------------------------------------


@pytest.fixture
def local_host(azurite, table_prefix, tmp_path):
    """The stand-in (three deliveries before dead-lettering, to keep the test short) and the local
    Functions host receiving from it, over Azurite, the memory slot platform, a policy file and a
    signing key, as the demo wires them."""
    import azure.functions as func

    from devstack.authority import KEY_ID, new_signing_key, write_policy
    from devstack.funchost import LocalFunctionHost
    from shared import bootstrap
    from shared.settings import Settings
    from tests.builders import SUBSCRIPTION as AZURE_SUBSCRIPTION
    from tests.e2e.conftest import RG, SITE

    key = new_signing_key()
    policy = write_policy(tmp_path, subscription=AZURE_SUBSCRIPTION, resource_group=RG, sites=SITE)
    with ServiceBusEmulator(release_events(max_delivery_count=3)) as bus:
        settings = {
            "RELEASE_STORE_CONNECTION": azurite.connection_string,
            "RELEASE_STORE_TABLE_PREFIX": table_prefix,
            "SLOT_PLATFORM": "memory",
            "RELEASE_POLICY_PATH": str(policy),
            f"RELEASE_SIGNING_KEY_{KEY_ID}": key,
            "RELEASE_EVENTS_TOPIC": TOPIC,
            "RELEASE_EVENTS_SUBSCRIPTION": SUBSCRIPTION_NAME,
            "RECONCILE_SCHEDULE": "*/30 * * * * *",
            "WORK_QUEUE_NAME": "release-work",
            "ServiceBusConnection": bus.connection_string,
        }
        container = bootstrap.build(Settings.from_env(settings))
        bootstrap.use(container)
        app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)  # get_functions() runs once per app
        for module in (
            "functions.release_events",
            "functions.reconcile_timer",
            "functions.reconcile_worker",
            "functions.http_api",
        ):
            app.register_functions(__import__(module, fromlist=["bp"]).bp)
        host = LocalFunctionHost(app, settings, function_key="k")
        try:
            host.start(run_timers=False, service_bus_session_idle_timeout=0.5)
            yield bus, container, key
        finally:
            host.stop()
            bootstrap.use(None)


def signed_event(key: str, release_id: str) -> ServiceBusMessage:
    from devstack.authority import KEY_ID
    from shared.authority.proofs import sign
    from tests.e2e.conftest import canary_event

    doc = canary_event(release_id=release_id)
    raw = json.dumps(doc).encode()
    target = doc["target"]
    return ServiceBusMessage(
        raw,
        message_id=release_id,
        session_id=f"{target['subscriptionId']}/{target['resourceGroup']}/{target['site']}",
        content_type="application/json",
        application_properties={"releaseSignature": sign(raw, key), "releaseKeyId": KEY_ID},
    )


def test_the_local_host_turns_a_signed_event_published_to_service_bus_into_a_release(local_host):
    from shared.ports import ReleaseNotFound

    bus, container, key = local_host
    send(bus, signed_event(key, "web-1.1.0"))

    def created():
        try:
            return container.service.get("web-1.1.0")
        except ReleaseNotFound:
            return None

    release = until(created, "the release web-1.1.0")
    assert release.phase.value == "deploying"
    with client(bus) as sb, pytest.raises(OperationTimeoutError), session_receiver(sb, wait=1) as receiver:
        receive(receiver)  # completed: nothing is left for anyone


def test_a_message_the_function_raises_on_is_abandoned_redelivered_then_dead_lettered(local_host, caplog):
    from shared import bootstrap
    from shared.adapters.table_store import TableReleaseStore
    from shared.service import ReleaseService

    bus, container, key = local_host
    # Storage goes away: the trigger raises StoreUnavailable so that Service Bus delivers again.
    unreachable = TableReleaseStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
        retry_total=0,
    )
    parts = container.parts
    service = ReleaseService(
        unreachable,
        parts["platform"],
        parts["validator"],
        parts["analyzer"],
        container.service.notifier,
        container.service.clock,
        authority=parts["authority"],
    )
    bootstrap.use(bootstrap.Container(container.settings, service, parts))
    caplog.set_level(logging.WARNING, logger="devstack.funchost")
    send(bus, signed_event(key, "web-1.2.0"))
    with client(bus) as sb:
        dead_letters = sb.get_subscription_receiver(
            TOPIC, SUBSCRIPTION_NAME, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=WAIT
        )
        with dead_letters:
            messages = until(lambda: receive(dead_letters), "the message in the dead-letter queue")
            (message,) = messages
            assert message.message_id == "web-1.2.0"
            assert message.dead_letter_reason == "MaxDeliveryCountExceeded"
            dead_letters.complete_message(message)
    abandoned = [r.getMessage() for r in caplog.records if "abandoning" in r.getMessage()]
    assert [f"(delivery {n})" in line for n, line in enumerate(abandoned, 1)] == [True, True, True]
