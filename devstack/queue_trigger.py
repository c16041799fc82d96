"""The local host's queue trigger: receive from an Azure Storage queue (Azurite's queue service) with
the real SDK and run the function the way the Functions host does.

As the host does: up to ``batch_size`` messages are fetched at once and run in parallel; a message
whose function returns is deleted; one that raises becomes visible again after
``visibility_timeout`` seconds, and once it has been dequeued ``max_dequeue_count`` times it is
moved to ``<queue>-poison``. The queue is polled with a backoff up to ``max_polling_interval``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

log = logging.getLogger("devstack.queue_trigger")

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: float = 10.0
    max_polling_interval: float = 2.0

    @classmethod
    def from_host_json(cls, path: Path = HOST_JSON) -> QueueOptions:
        queues = json.loads(path.read_text()).get("extensions", {}).get("queues", {})

        def seconds(value: str | None, default: float) -> float:
            if not value:
                return default
            h, m, s = value.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)

        return cls(
            batch_size=int(queues.get("batchSize", cls.batch_size)),
            max_dequeue_count=int(queues.get("maxDequeueCount", cls.max_dequeue_count)),
            visibility_timeout=seconds(queues.get("visibilityTimeout"), cls.visibility_timeout),
            max_polling_interval=seconds(queues.get("maxPollingInterval"), cls.max_polling_interval),
        )


@dataclass(frozen=True)
class QueueTrigger:
    function_name: str
    queue_name: str
    connection_setting: str
    handler: Any


class QueueTriggerListener:
    def __init__(self, trigger: QueueTrigger, connection_string: str, options: QueueOptions | None = None):
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        self.trigger = trigger
        self.options = options or QueueOptions.from_host_json()
        policies = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
        }
        self._queue = QueueClient.from_connection_string(connection_string, trigger.queue_name, **policies)
        self._poison = QueueClient.from_connection_string(connection_string, f"{trigger.queue_name}-poison", **policies)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=self.options.batch_size, thread_name_prefix="queue-trigger")
        self.processed = 0
        self.poisoned = 0

    def start(self) -> QueueTriggerListener:
        from azure.core.exceptions import ResourceExistsError

        for client in (self._queue, self._poison):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
        self._thread = threading.Thread(target=self._run, name=f"queue-{self.trigger.function_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        idle = 0.1
        while not self._stop.is_set():
            try:
                messages = list(
                    self._queue.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=max(30, int(self.options.visibility_timeout)),
                    )
                )
            except Exception as exc:  # the host keeps polling through storage errors
                log.warning("queue %s: receive failed: %s", self.trigger.queue_name, exc)
                self._stop.wait(self.options.max_polling_interval)
                continue
            if not messages:
                self._stop.wait(idle)
                idle = min(self.options.max_polling_interval, idle * 2)
                continue
            idle = 0.1
            list(self._pool.map(self._handle, messages))

    def _handle(self, message: Any) -> None:
        content = message.content
        body = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        try:
            self.trigger.handler(func.QueueMessage(id=message.id, body=body, pop_receipt=message.pop_receipt))
        except Exception as exc:
            self._failed(message, content, exc)
            return
        try:
            self._queue.delete_message(message)
            self.processed += 1
        except Exception as exc:  # it becomes visible again and is processed twice: harmless here
            log.warning("queue %s: could not delete message %s: %s", self.trigger.queue_name, message.id, exc)

    def _failed(self, message: Any, content: Any, exc: Exception) -> None:
        log.warning("queue function %s raised on message %s: %s", self.trigger.function_name, message.id, exc)
        try:
            if (message.dequeue_count or 0) >= self.options.max_dequeue_count:
                self._poison.send_message(content)
                self._queue.delete_message(message)
                self.poisoned += 1
            else:
                self._queue.update_message(message, visibility_timeout=int(self.options.visibility_timeout))
        except Exception as error:  # left as it is: visible again when its receive lease ends
            log.warning("queue %s: could not return message %s: %s", self.trigger.queue_name, message.id, error)


__all__ = ["QueueOptions", "QueueTrigger", "QueueTriggerListener"]
