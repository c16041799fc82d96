"""Every log line made while a release is worked on carries its id, version, site, phase and step,
with telemetry off (nothing of OpenTelemetry is loaded then)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from shared import telemetry
from tests.builders import CANARY_EVENT, body, harness, ingest


def test_log_lines_of_a_reconcile_carry_the_release_fields(caplog):
    h = harness()
    caplog.set_level(logging.INFO, logger="release_controller")
    result = ingest(h.service, body(CANARY_EVENT), message_id="m1", source="test")
    release_id = result.release.id

    def emit():
        logging.getLogger("release_controller.test").warning("inside")

    with telemetry.reconcile_span(release_id):
        telemetry.describe(h.service.get(release_id))
        emit()
    emit()
    inside, outside = [r for r in caplog.records if r.getMessage() == "inside"]
    assert inside.release_id == release_id and inside.release_version == CANARY_EVENT["version"]
    assert inside.site == CANARY_EVENT["target"]["site"] and inside.phase == "deploying"
    assert not hasattr(outside, "release_id")
    created = next(r for r in caplog.records if "created for" in r.getMessage())
    assert created.release_id == release_id and created.phase == "pending"


def test_telemetry_off_loads_no_opentelemetry():
    """In a fresh process: the app and its service, with no connection string, load none of it."""
    script = (
        "import sys, function_app, shared.bootstrap, shared.service, shared.telemetry as t; "
        "assert t.configure({}) is False and not t.enabled(); "
        "print(sorted(n for n in sys.modules if n.startswith(('opentelemetry', 'azure.monitor'))))"
    )
    env = {k: v for k, v in os.environ.items() if k != telemetry.CONNECTION_SETTING}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
