"""One release's observations have a time budget per reconcile: a slow slot can cost a tick at most
that budget, and a probe the budget cuts short is no verdict on the slot."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.adapters.probes import HttpProber
from shared.domain.model import Phase
from shared.ports import RECONCILE_DEADLINE, BudgetSpent
from tests.e2e.conftest import canary_event


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(1.5)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        with contextlib.suppress(OSError):  # the prober gave up first, as it should
            self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_probe_the_budget_cuts_short_is_no_verdict_but_its_own_timeout_is(slow_url):
    prober = HttpProber()
    token = RECONCILE_DEADLINE.set(time.monotonic() + 0.2)
    try:
        with pytest.raises(BudgetSpent):
            prober.get(slow_url, timeout=10)
        with pytest.raises(BudgetSpent):
            prober.get(slow_url, timeout=10)  # and once spent, nothing more is asked
    finally:
        RECONCILE_DEADLINE.reset(token)
    result = prober.get(slow_url, timeout=0.2)  # the check's own timeout: a failed probe
    assert result.status is None and "no answer" in (result.error or "")


def test_a_slot_slower_than_the_budget_costs_each_tick_only_the_budget_and_fails_nothing(e2e):
    e2e.service.observe_budget_seconds = 0.3
    release_id = e2e.submit(canary_event(settings={"EMULATOR_ERROR_RATE": "0", "EMULATOR_LATENCY_MS": "2000"}))
    for _ in range(6):
        e2e.tick(release_id, 30)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.DEPLOYING, "a slot nobody could judge was neither passed nor failed"
    assert release.transient_failures >= 1
    entries = [a.entry for a in e2e.service.audit(release_id)]
    out_of_time = [a for a in entries if a.action == "transient.failure"]
    assert out_of_time and all("ran out of time" in a.message for a in out_of_time)
    assert not [a for a in entries if a.action.startswith("validation.")]
