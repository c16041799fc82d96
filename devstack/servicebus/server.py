"""Start the Service Bus stand-in from a small config: in-process (tests) or as a process of its own.

    python -m devstack.servicebus --config devstack/servicebus/entities.sample.json

prints its connection string and entities as JSON, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from proton.reactor import ApplicationEvent, Container, EventInjector

from devstack.servicebus.amqp import ServiceBusHandler
from devstack.servicebus.broker import Namespace
from devstack.servicebus.entities import ServiceBusConfig, release_events

log = logging.getLogger("devstack.servicebus")


class _Control(ServiceBusHandler):
    """The handler plus what only the emulator's owner asks of the event thread."""

    acceptor: Any = None
    container: Any = None

    def on_reactor_init(self, event: Any) -> None:
        event.container.schedule(self.tick_seconds, self)

    def on_stop_stand_in(self, event: Any) -> None:
        self.close_all()
        self.acceptor.close()
        self.container.stop()


class ServiceBusEmulator:
    """A Service Bus namespace on 127.0.0.1 (a free port), plain AMQP as for
    ``UseDevelopmentEmulator=true``; one event thread serves every connection."""

    def __init__(self, config: ServiceBusConfig | None = None):
        self.config = config or release_events()
        clock = self.config.clock or time.time
        self.namespace = Namespace.from_config(self.config)
        self._handler = _Control(self.config, self.namespace, clock)
        self._container: Container | None = None
        self._injector: EventInjector | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> ServiceBusEmulator:
        container = Container(self._handler)
        container.container_id = "servicebus-stand-in"
        acceptor = container.listen("127.0.0.1:0")
        # proton does not expose the port it bound; its listening socket does.
        self.port = acceptor._selectable._delegate.getsockname()[1]
        self._handler.acceptor = acceptor
        self._handler.container = container
        self._injector = EventInjector()
        container.selectable(self._injector)
        self._container = container
        self._thread = threading.Thread(target=container.run, name="servicebus-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None or self._injector is None:
            return
        self._injector.trigger(ApplicationEvent("stop_stand_in"))
        self._thread.join(timeout)
        if self._thread.is_alive():
            # Its event loop may still read the injector's pipe: leave it open rather than pull it away.
            log.warning("the Service Bus stand-in did not stop within %.0f s", timeout)
        else:
            for fd in self._injector.pipe:
                os.close(fd)
        self._thread = None
        self._injector = None

    def __enter__(self) -> ServiceBusEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what clients use ----------------------------------------------------------------------

    @property
    def fully_qualified_namespace(self) -> str:
        assert self.port, "start the stand-in first"
        return f"127.0.0.1:{self.port}"

    @property
    def connection_string(self) -> str:
        """The shape Microsoft's emulator documents (``true`` is case-sensitive in the SDK)."""
        return (
            f"Endpoint=sb://{self.fully_qualified_namespace};SharedAccessKeyName={self.config.key_name};"
            f"SharedAccessKey={self.config.key};UseDevelopmentEmulator=true"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "connectionString": self.connection_string,
            "topics": [
                {"name": t.name, "subscriptions": [s.name for s in t.subscriptions]} for t in self.config.topics
            ],
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.servicebus", description=__doc__)
    parser.add_argument("--config", help="JSON: {topics: [{name, subscriptions: [{name, requiresSession}]}]}")
    args = parser.parse_args(argv)
    config = ServiceBusConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else None
    emulator = ServiceBusEmulator(config).start()
    print(json.dumps(emulator.describe(), indent=2), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emulator.stop()
    sys.exit(0)
