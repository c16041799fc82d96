"""Telemetry through the Azure Monitor distro, exported over HTTP to a local stand-in for the
ingestion endpoint: a span per reconcile with its ARM calls beneath it, the release's fields on
every log line, and the controller's metrics. Runs in a process of its own (the providers are
process-wide)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ingestion():
    envelopes: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            items = json.loads(body) if self.path.endswith("/track") else []  # not live metrics' pings
            envelopes.extend(items)
            answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", envelopes
    finally:
        server.shutdown()
        server.server_close()


def test_reconciles_are_traced_with_their_arm_calls_and_logs_and_metrics_carry_the_release(
    ingestion, azurite, table_prefix, tmp_path
):
    endpoint, envelopes = ingestion
    env = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint={endpoint};"
            f"LiveEndpoint={endpoint}"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "",
        "TMPDIR": str(tmp_path),
        "PROBE_STORE": azurite.connection_string,
        "PROBE_PREFIX": table_prefix,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.telemetry_probe"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("rolledBack")

    def data(e):
        return e["data"]["baseData"]

    spans = [e for e in envelopes if e["data"]["baseType"] in ("RemoteDependencyData", "RequestData")]
    reconciles = [e for e in spans if data(e)["name"] == "reconcile web-1.2.0"]
    assert reconciles, sorted({data(e)["name"] for e in spans})
    properties = data(reconciles[-1])["properties"]
    assert properties["release.id"] == "web-1.2.0" and properties["release.release_version"] == "1.2.0"
    ids = {e["tags"]["ai.operation.parentId"] for e in spans if "ai.operation.parentId" in e["tags"]}
    assert any(data(r)["id"] in ids for r in reconciles), "Azure SDK calls are children of a reconcile"

    logs = [e for e in envelopes if e["data"]["baseType"] in ("MessageData", "ExceptionData")]
    with_release = [e for e in logs if data(e).get("properties", {}).get("release_id") == "web-1.2.0"]
    assert with_release, [(data(e).get("message"), data(e).get("properties")) for e in logs if "properties" in data(e)][
        :6
    ]
    assert {"release_version", "site", "phase"} <= set(data(with_release[0])["properties"])

    metrics = {m["name"] for e in envelopes if e["data"]["baseType"] == "MetricData" for m in data(e)["metrics"]}
    assert {"reconcile.duration", "releases.rollbacks", "releases.finished", "release.time_to_detect"} <= metrics
