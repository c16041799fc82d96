"""The data plane: one HTTPS worker per slot, and the production front door that splits traffic.

A slot's app behaves as its app settings say, so a "bad build" is a release whose settings make it
fail: ``EMULATOR_ERROR_RATE`` (0..1, share of 500s on every path but /healthz),
``EMULATOR_LATENCY_MS`` (added latency),
``EMULATOR_HEALTH_STATUS`` (status of /healthz). It reports ``RELEASE_ID`` and ``RELEASE_VERSION``.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.appservice.state import Cloud, Site, Slot

ROUTING_COOKIE = "x-ms-routing-name"


def serve_slot(cloud: Cloud, site: Site, slot: Slot, path: str) -> tuple[int, str, bytes]:
    """What the slot's app answers, and a record of it in the slot's metrics. While the app starts
    the front end answers 503 itself: the app never sees the request, so its metrics do not count
    it (as Azure's Http5xx does not)."""
    started = time.monotonic()
    settings = dict(slot.settings)
    if not cloud.ready(slot):
        return 503, "text/html", b"<h1>Service Unavailable</h1><p>the app is starting</p>"
    else:
        delay = float(settings.get("EMULATOR_LATENCY_MS") or 0) / 1000
        if delay > 0:
            time.sleep(delay)
        error_rate = float(settings.get("EMULATOR_ERROR_RATE") or 0)
        error_rate = max(error_rate, site.failing_versions.get(settings.get("RELEASE_VERSION") or "", 0.0))
        route = urlsplit(path).path
        with cloud.lock:
            # The health endpoint does not touch the failing dependency: smoke checks can pass.
            failed = route != "/healthz" and error_rate > 0 and cloud.rng.random() < error_rate
        if failed:
            status, body, content_type = (
                500,
                b"internal server error (injected by the release's settings)",
                "text/plain",
            )
        elif route == "/healthz":
            status = int(settings.get("EMULATOR_HEALTH_STATUS") or 200)
            body, content_type = (b"ok" if status < 400 else b"unhealthy"), "text/plain"
        else:
            status = 200
            body = json.dumps(
                {
                    "site": site.name,
                    "slot": slot.name,
                    "releaseId": settings.get("RELEASE_ID"),
                    "version": settings.get("RELEASE_VERSION"),
                    "image": slot.config.get("linuxFxVersion", ""),
                    "path": route,
                }
            ).encode()
            content_type = "application/json"
    slot.metrics.record(cloud.now(), status, (time.monotonic() - started) * 1000)
    return status, content_type, body


def warm_up(cloud: Cloud, site: Site, slot: Slot, path: str) -> int | None:
    """The swap's warm-up request to the slot's app: its status, or None when it does not answer."""
    if not cloud.ready(slot):
        return None
    return serve_slot(cloud, site, slot, path)[0]


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-request are normal under load


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AppServiceEmulator"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def start_worker(cloud: Cloud, site: Site, slot: Slot, context: ssl.SSLContext) -> ThreadingHTTPServer:
    """A slot's own host name: requests go straight to its app."""

    class Worker(_Handler):
        def do_GET(self) -> None:
            cloud.advance()
            status, content_type, body = serve_slot(cloud, site, slot, self.path)
            self._send(status, content_type, body)

    return _start(Worker, context)


def start_front_door(cloud: Cloud, site: Site, context: ssl.SSLContext) -> ThreadingHTTPServer:
    """The production host name: routes by the ramp-up rules, pins visitors with the routing cookie."""

    class FrontDoor(_Handler):
        def do_GET(self) -> None:
            cloud.advance()
            query = parse_qs(urlsplit(self.path).query)
            cookies = SimpleCookie(self.headers.get("Cookie") or "")
            asked = (query.get(ROUTING_COOKIE) or [None])[0]
            cookie = asked or (cookies[ROUTING_COOKIE].value if ROUTING_COOKIE in cookies else None)
            slot, pin = cloud.route(site, cookie)
            with cloud.lock:
                site.visits_by_release[slot.settings.get("RELEASE_ID") or "unknown"] += 1
            status, content_type, body = serve_slot(cloud, site, slot, self.path)
            headers = {}
            if pin or asked:
                headers["Set-Cookie"] = f"{ROUTING_COOKIE}={pin or asked}; Path=/; HttpOnly; Max-Age=3600"
            self._send(status, content_type, body, headers)

    return _start(FrontDoor, context)


def _start(handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext) -> ThreadingHTTPServer:
    server = _TlsServer(handler, context)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server
