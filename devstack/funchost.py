"""A local stand-in for the Azure Functions host, so tests and the demo need no Core Tools.

It indexes ``function_app.app`` the way the host does (``get_functions()`` and the raw bindings),
checks that every ``%setting%`` a binding names exists, and then runs the same registered
functions: HTTP routes under ``/api`` (function keys enforced for FUNCTION-level routes), the
timer on its schedule, and Service Bus messages — received from a namespace with the real SDK
when the binding's connection setting holds a connection string (``servicebus_trigger.py``; the
Service Bus stand-in in ``devstack/servicebus`` serves one locally), or handed to ``deliver()``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from devstack.queue_trigger import QueueTrigger, QueueTriggerListener
from devstack.servicebus_trigger import SESSION_IDLE_TIMEOUT_SECONDS, ServiceBusTrigger, ServiceBusTriggerListener

log = logging.getLogger("devstack.funchost")


class HostError(RuntimeError):
    """The app would not index or start on the real host either."""


@dataclass
class HttpRoute:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str
    handler: Any


def _route_pattern(template: str) -> re.Pattern[str]:
    parts = []
    for segment in template.strip("/").split("/"):
        match = re.fullmatch(r"\{(\w+)(?::[^}]*)?\}", segment)
        parts.append(f"(?P<{match.group(1)}>[^/]+)" if match else re.escape(segment))
    return re.compile("^" + "/".join(parts) + "$", re.IGNORECASE)


class InvocationContext(func.Context):
    """What the Python worker passes to a function that takes ``context``: the invocation's id and
    name, and the thread-local storage it reads the invocation id from to forward logs."""

    def __init__(self, function_name: str):
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._thread_local_storage = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> threading.local:
        return self._thread_local_storage


def _invoker(name: str, function: Callable[..., Any], arg_name: str) -> Callable[[Any], Any]:
    """Call ``function`` as the worker does: the trigger by its binding name, plus ``context``
    when the function declares it."""
    wants_context = "context" in inspect.signature(function).parameters

    def invoke(value: Any) -> Any:
        arguments = {arg_name: value}
        if wants_context:
            arguments["context"] = InvocationContext(name)
        return function(**arguments)

    return invoke


def _schedule_seconds(schedule: str) -> float:
    """Seconds between runs of a 6-field NCRONTAB like '*/30 * * * * *' (the form this app uses)."""
    fields = schedule.split()
    if len(fields) != 6 or fields[1:] != ["*"] * 5 or not re.fullmatch(r"\*/\d+|0", fields[0]):
        raise HostError(f"the local host runs schedules of the form '*/N * * * * *', not {schedule!r}")
    return 60.0 if fields[0] == "0" else float(fields[0][2:])


class LocalFunctionHost:
    def __init__(
        self,
        app: func.FunctionApp,
        settings: Mapping[str, str],
        *,
        function_key: str,
        browser_principal: str | None = None,
    ):
        """``browser_principal``: stands in for App Service authentication's sign-in, for browsers
        on the dashboard: a dashboard request without an ``X-MS-CLIENT-PRINCIPAL`` gets this one."""
        self.settings = dict(settings)
        self.function_key = function_key
        self.browser_principal = browser_principal
        self.routes: list[HttpRoute] = []
        self.timers: list[tuple[str, float, Any]] = []
        self.service_bus: dict[str, Any] = {}
        self.service_bus_triggers: list[ServiceBusTrigger] = []
        self._listeners: list[ServiceBusTriggerListener] = []
        self.queue_triggers: list[QueueTrigger] = []
        self.queue_listeners: list[QueueTriggerListener] = []
        self._server: ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._index(app)

    def _setting(self, value: str) -> str:
        if value.startswith("%") and value.endswith("%"):
            name = value.strip("%")
            if name not in self.settings:
                raise HostError(f"the binding refers to app setting {name}, which is not set")
            return self.settings[name]
        return value

    def _index(self, app: func.FunctionApp) -> None:
        for function in app.get_functions():
            bindings = [json.loads(b) for b in function.get_raw_bindings()]
            trigger = next(b for b in bindings if b["type"].endswith("Trigger"))
            name = function.get_function_name()
            handler = _invoker(name, function.get_user_function(), trigger["name"])
            if trigger["type"] == "httpTrigger":
                self.routes.append(
                    HttpRoute(
                        name,
                        _route_pattern(trigger["route"]),
                        frozenset(m.upper() for m in trigger["methods"]),
                        trigger["authLevel"],
                        handler,
                    )
                )
            elif trigger["type"] == "timerTrigger":
                self.timers.append((name, _schedule_seconds(self._setting(trigger["schedule"])), handler))
            elif trigger["type"] == "serviceBusTrigger":
                self.service_bus[name] = handler
                self.service_bus_triggers.append(
                    ServiceBusTrigger(
                        name,
                        self._setting(trigger["topicName"]),
                        self._setting(trigger["subscriptionName"]),
                        trigger["connection"],
                        bool(trigger.get("isSessionsEnabled", False)),
                        handler,
                    )
                )
            elif trigger["type"] == "queueTrigger":
                self.queue_triggers.append(
                    QueueTrigger(name, self._setting(trigger["queueName"]), trigger["connection"], handler)
                )
            else:
                raise HostError(f"{name}: the local host does not run {trigger['type']}")
        # Literal segments win over parameters, as on the real host.
        self.routes.sort(key=lambda r: r.pattern.pattern.count("(?P<"))

    # -- running -----------------------------------------------------------------------------

    def start(
        self,
        *,
        port: int = 0,
        run_timers: bool = True,
        service_bus_session_idle_timeout: float = SESSION_IDLE_TIMEOUT_SECONDS,
    ) -> LocalFunctionHost:
        """Serve HTTP, run the timers, and receive for every Service Bus trigger whose connection
        setting holds a connection string (an identity-based ``<name>__fullyQualifiedNamespace``
        needs Azure: those triggers are left to ``deliver()``). A session is let go after
        ``service_bus_session_idle_timeout`` seconds without a message (host.json's
        ``sessionIdleTimeout``)."""
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = host.handle(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._spawn(self._server.serve_forever)
        if run_timers:
            for name, seconds, handler in self.timers:
                self._spawn(self._run_timer, name, seconds, handler)
        for trigger in self.service_bus_triggers:
            connection_string = self.settings.get(trigger.connection_setting)
            if connection_string:
                listener = ServiceBusTriggerListener(
                    trigger, connection_string, session_idle_timeout=service_bus_session_idle_timeout
                )
                self._listeners.append(listener.start())
        for queue_trigger in self.queue_triggers:
            connection_string = self.settings.get(queue_trigger.connection_setting)
            if connection_string:
                self.queue_listeners.append(QueueTriggerListener(queue_trigger, connection_string).start())
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_timer(self, name: str, seconds: float, handler: Any) -> None:
        while not self._stop.wait(seconds):
            try:
                handler(TimerRequest(past_due=False))
            except Exception:  # the real host logs a failed invocation and keeps the schedule
                log.exception("timer function %s failed", name)

    def stop(self) -> None:
        self._stop.set()
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        for queue_listener in self.queue_listeners:
            queue_listener.stop()
        self.queue_listeners.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:  # a timer tick under way ends before what it uses is torn down
            thread.join(timeout=30)
        self._threads.clear()

    # -- requests ----------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        if not split.path.startswith("/api/"):
            return 404, {}, b""
        path = split.path[len("/api/") :]
        signed_in = any(k.lower() == "x-ms-client-principal" for k in headers)
        if self.browser_principal and path.startswith("dashboard") and not signed_in:
            headers = {**headers, "X-MS-CLIENT-PRINCIPAL": self.browser_principal}
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None or method not in route.methods:
                continue
            if route.auth_level != "ANONYMOUS":
                key = headers.get("x-functions-key") or headers.get("X-Functions-Key") or query.get("code")
                if key != self.function_key:
                    return 401, {}, b""
            request = func.HttpRequest(
                method,
                f"{self.url}{raw_path}" if self._server else raw_path,
                headers={k.lower(): v for k, v in headers.items()},
                params=query,
                route_params=match.groupdict(),
                body=body,
            )
            response: func.HttpResponse = route.handler(request)
            out = dict(response.headers.items())
            out["Content-Type"] = response.mimetype or "text/plain"
            return response.status_code, out, response.get_body() or b""
        return 404, {}, b""

    def deliver(
        self, body: bytes, *, message_id: str | None = None, application_properties: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Hand a message to the Service Bus function as the host would (completes unless it raises)."""
        message = ServiceBusMessage(
            body=body,
            message_id=message_id or uuid.uuid4().hex,
            delivery_count=1,
            application_properties=dict(application_properties or {}),
            user_properties={},
        )
        for name, handler in self.service_bus.items():
            try:
                handler(message)
            except Exception as exc:  # the real host abandons the message for redelivery
                log.warning("service bus function %s raised; the message would be redelivered: %s", name, exc)
                return 503, {"Content-Type": "text/plain"}, f"abandoned: {exc}".encode()
        return 202, {"Content-Type": "text/plain"}, b"completed"
