"""The CI path end to end on the wire: `releasectl publish --wait` sends the signed event to the
Service Bus stand-in with the real SDK, the local Functions host receives it on a session and runs
the indexed `release_events` function, and releasectl follows the release over HTTP to the exit
code a pipeline branches on. Releases live on Azurite; the platform and probes are in-memory fakes.
"""

from __future__ import annotations

import faulthandler
import json
import time
from collections.abc import Iterator

import azure.functions as func
import pytest

import releasectl.follow
from devstack.funchost import LocalFunctionHost
from devstack.servicebus import ServiceBusEmulator, release_events
from releasectl.cli import main
from releasectl.outcomes import Exit
from shared.domain.model import Phase
from shared.ports import ReleaseNotFound
from tests.builders import CANARY_EVENT, TEST_KEY, TEST_KEY_ID, event
from tests.functions.test_handlers import principal, tick
from tests.functions.test_releasectl import failing

TOPIC, SUBSCRIPTION = "release-events", "controller"


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Ends the run with every thread's stack if a test hangs (pyamqp has no overall deadline)."""
    faulthandler.dump_traceback_later(180, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def ci(app, indexed, monkeypatch):
    """The stand-in namespace, the local host receiving from it, and releasectl configured as a
    pipeline would be: the connection string in the environment, the API for following."""
    with ServiceBusEmulator(release_events(max_delivery_count=3)) as bus:
        settings = {
            "RELEASE_EVENTS_TOPIC": TOPIC,
            "RELEASE_EVENTS_SUBSCRIPTION": SUBSCRIPTION,
            "RECONCILE_SCHEDULE": "*/5 * * * * *",
            "WORK_QUEUE_NAME": "release-work",
            "ServiceBusConnection": bus.connection_string,
        }
        fresh = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
        for module in (
            "functions.release_events",
            "functions.reconcile_timer",
            "functions.reconcile_worker",
            "functions.http_api",
        ):
            fresh.register_functions(__import__(module, fromlist=["bp"]).bp)
        host = LocalFunctionHost(fresh, settings, function_key="k")
        host.start(run_timers=False, service_bus_session_idle_timeout=0.5)
        try:
            monkeypatch.setenv("RELEASECTL_API", host.url)
            monkeypatch.setenv("RELEASECTL_FUNCTION_KEY", "k")
            monkeypatch.setenv("RELEASECTL_LOCAL_PRINCIPAL", principal("olga", ["reader", "submitter", "operator"]))
            monkeypatch.setenv("RELEASECTL_SIGNING_KEY", TEST_KEY)
            monkeypatch.setenv("RELEASECTL_SERVICEBUS_CONNECTION", bus.connection_string)
            for name in ("GITHUB_SHA", "BUILD_SOURCEVERSION"):
                monkeypatch.delenv(name, raising=False)
            elapsed = [0.0]
            monkeypatch.setattr(releasectl.follow, "pause", lambda seconds: _minute(app, indexed, elapsed))
            monkeypatch.setattr(releasectl.follow, "monotonic", lambda: elapsed[0])
            yield app
        finally:
            host.stop()


def _minute(app, indexed, elapsed: list[float]) -> None:
    """Between two looks of `wait` a minute passes for the controller and for releasectl alike —
    once a release has arrived; until then releasectl's clock stands still (a short real wait,
    bounded by the watchdog)."""
    if not app.service.list().items:
        time.sleep(0.05)
        return
    elapsed[0] += 60
    tick(indexed, app, 60)


def publish(tmp_path, doc, *extra: str) -> int:
    path = tmp_path / f"{doc['releaseId']}.json"
    path.write_text(json.dumps(doc))
    return main(["publish", "-f", str(path), "--key-id", TEST_KEY_ID, "--interval", "1", *extra])


def arrived(app, release_id: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return app.service.get(release_id)
        except ReleaseNotFound:
            time.sleep(0.05)
    raise AssertionError(f"{release_id} did not arrive over Service Bus within {timeout:.0f} s")


def test_published_on_service_bus_a_good_release_is_followed_to_success_exit_0(ci, tmp_path, capsys):
    assert publish(tmp_path, CANARY_EVENT, "--wait") == Exit.SUCCEEDED
    release = ci.service.get("web-1.4.2")
    assert release.phase is Phase.SUCCEEDED
    assert "accepted via serviceBus" in ci.service.audit("web-1.4.2")[0].entry.message
    assert "web-1.4.2 1.4.2 on contoso-web: succeeded" in capsys.readouterr().out


def test_published_on_service_bus_a_bad_release_is_rolled_back_exit_1(ci, tmp_path, capsys):
    ci.analyzer.script = failing
    assert publish(tmp_path, CANARY_EVENT, "--wait") == Exit.ROLLED_BACK
    assert ci.service.get("web-1.4.2").phase is Phase.ROLLED_BACK
    assert "rolled back" in capsys.readouterr().err


def test_an_event_the_controller_refuses_on_service_bus_exits_7_with_the_stored_reason(
    ci, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("RELEASECTL_SIGNING_KEY", "not-the-key")
    assert publish(tmp_path, CANARY_EVENT, "--wait") == Exit.REJECTED
    err = capsys.readouterr().err
    assert "refused web-1.4.2" in err and "signature" in err
    assert ci.service.list().items == []


def test_a_release_superseded_by_the_next_build_exits_4(ci, tmp_path):
    assert publish(tmp_path, event(promotion="manual", approveBeforeTraffic=True)) == Exit.SUCCEEDED
    arrived(ci, "web-1.4.2")
    assert publish(tmp_path, event(releaseId="web-1.4.3", version="1.4.3")) == Exit.SUCCEEDED
    arrived(ci, "web-1.4.3")
    assert main(["wait", "web-1.4.2", "--interval", "1", "--timeout", "10m"]) == Exit.CANCELLED
    assert main(["wait", "web-1.4.3", "--interval", "1", "--timeout", "30m"]) == Exit.SUCCEEDED


def test_publishing_the_same_release_twice_creates_it_once(ci, tmp_path):
    assert publish(tmp_path, CANARY_EVENT) == Exit.SUCCEEDED
    arrived(ci, "web-1.4.2")
    assert publish(tmp_path, CANARY_EVENT, "--wait") == Exit.SUCCEEDED
    releases = ci.service.list().items
    assert [r.release_id for r in releases] == ["web-1.4.2"]
    accepted = [a for a in ci.service.audit("web-1.4.2") if "accepted via" in a.entry.message]
    assert len(accepted) == 1


def test_one_sites_events_arrive_in_the_order_they_were_published(ci, tmp_path):
    """Same session: 1.4.3 (published second) supersedes 1.4.2, never the other way round."""
    for n in range(2, 6):
        doc = event(releaseId=f"web-1.4.{n}", version=f"1.4.{n}", promotion="manual", approveBeforeTraffic=True)
        assert publish(tmp_path, doc) == Exit.SUCCEEDED
    arrived(ci, "web-1.4.5")
    releases = {r.release_id: ci.service.get(r.release_id) for r in ci.service.list().items}
    assert sorted(releases) == ["web-1.4.2", "web-1.4.3", "web-1.4.4", "web-1.4.5"]
    assert not releases["web-1.4.5"].is_final, "the last one published is the one that runs"
    for n in (2, 3, 4):
        assert releases[f"web-1.4.{n}"].phase is Phase.CANCELLED
        assert releases[f"web-1.4.{n}"].superseded_by == f"web-1.4.{n + 1}", "each by the one published after it"
