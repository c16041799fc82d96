"""A webhook gate for the tests: HTTPS on 127.0.0.1 with a certificate from the emulator's CA,
checking the controller's signature, answering per stage as told."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.domain.policy import NamedGate

SECRET = "gate-secret-for-tests"
SECRET_SETTING = "WEBHOOK_SECRET_GATE"


class Gate:
    """``answers``: stage -> status, "slow" (answers after 2 s), "redirect" (302 to elsewhere), or
    (status, body) to send a body."""

    def __init__(self, tls: Any, answers: dict[str, Any] | None = None):
        self.answers = answers or {}
        self.calls: list[tuple[str, bool]] = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(expected, self.headers.get("X-Release-Signature-256", ""))
                payload = json.loads(raw)
                gate.calls.append((payload["stage"], signed))
                answer = gate.answers.get(payload["stage"], 200)
                body = b"ok"
                if answer == "slow":
                    time.sleep(2)
                    answer = 200
                if isinstance(answer, tuple):
                    answer, body = answer
                if answer == "redirect":
                    answer = 302
                try:
                    self.send_response(answer if signed else 401)
                    if answer == 302:
                        self.send_header("Location", "https://169.254.169.254/latest/meta-data/")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the controller gave up waiting, as it should

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert, tls.server_key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/gate"

    def named(self, *, allow_loopback: bool = True) -> NamedGate:
        """The gate as the platform team's policy names it (loopback allowed for this test gate)."""
        return NamedGate(self.url, SECRET_SETTING, ("127.0.0.0/8",) if allow_loopback else ())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def webhook(timeout: str = "5s", name: str = "gate") -> dict[str, Any]:
    return {
        "type": "webhook",
        "gate": name,
        "stages": ["beforeTraffic", "eachStep", "beforePromotion"],
        "timeout": timeout,
    }
