"""releasectl against the app served by the local Functions host over HTTP (releases on Azurite,
the in-memory platform): the exit code a pipeline branches on, for every way a release can end."""

from __future__ import annotations

import json
import os

import azure.functions as func
import pytest

import releasectl.follow
from devstack.funchost import LocalFunctionHost
from releasectl.cli import main
from releasectl.outcomes import Exit
from shared.domain.model import Measurement, Phase, ProviderKind, VersionStats
from tests.builders import CANARY_EVENT, SUBSCRIPTION, TEST_KEY, TEST_KEY_ID, event
from tests.functions.test_handlers import principal, tick

SETTINGS = {
    "RELEASE_EVENTS_TOPIC": "t",
    "RELEASE_EVENTS_SUBSCRIPTION": "s",
    "RECONCILE_SCHEDULE": "*/5 * * * * *",
    "WORK_QUEUE_NAME": "w",
}


@pytest.fixture
def served(app, indexed, monkeypatch):
    fresh = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for module in (
        "functions.release_events",
        "functions.reconcile_timer",
        "functions.reconcile_worker",
        "functions.http_api",
    ):
        fresh.register_functions(__import__(module, fromlist=["bp"]).bp)
    host = LocalFunctionHost(fresh, SETTINGS, function_key="k").start(run_timers=False)
    monkeypatch.setenv("RELEASECTL_API", host.url)
    monkeypatch.setenv("RELEASECTL_FUNCTION_KEY", "k")
    monkeypatch.setenv("RELEASECTL_LOCAL_PRINCIPAL", principal("olga", ["reader", "submitter", "operator"]))
    monkeypatch.setenv("RELEASECTL_SIGNING_KEY", TEST_KEY)
    for name in ("GITHUB_SHA", "BUILD_SOURCEVERSION", "RELEASECTL_SERVICEBUS_CONNECTION"):
        monkeypatch.delenv(name, raising=False)
    # Between two looks of `wait`, a minute passes for the controller and for releasectl alike.
    elapsed = [0.0]

    def pause(seconds: float) -> None:
        elapsed[0] += 60
        tick(indexed, app, 60)

    monkeypatch.setattr(releasectl.follow, "pause", pause)
    monkeypatch.setattr(releasectl.follow, "monotonic", lambda: elapsed[0])
    yield app
    host.stop()


def publish(tmp_path, doc, *extra: str) -> int:
    path = tmp_path / "release.json"
    path.write_text(json.dumps(doc))
    return main(["publish", "-f", str(path), "--key-id", TEST_KEY_ID, "--interval", "1", *extra])


def failing(release, now):
    return (
        Measurement(
            ProviderKind.HTTP,
            canary=VersionStats(requests=200, errors=60, latency_ms=20.0),
            stable=VersionStats(requests=200, errors=0, latency_ms=20.0),
        ),
    )


def test_a_release_that_succeeds_exits_0(served, tmp_path, capsys):
    assert publish(tmp_path, CANARY_EVENT, "--wait") == Exit.SUCCEEDED
    assert served.service.get("web-1.4.2").phase is Phase.SUCCEEDED
    assert "web-1.4.2 1.4.2 on contoso-web: succeeded" in capsys.readouterr().out


def test_a_release_that_is_rolled_back_exits_1(served, tmp_path, capsys):
    served.analyzer.script = failing
    assert publish(tmp_path, CANARY_EVENT, "--wait") == Exit.ROLLED_BACK
    assert "rolled back" in capsys.readouterr().err


def test_a_superseded_release_exits_4(served, tmp_path, indexed):
    assert publish(tmp_path, event(promotion="manual", approveBeforeTraffic=True)) == Exit.SUCCEEDED
    newer = event(releaseId="web-1.4.3", version="1.4.3")
    assert publish(tmp_path, newer) == Exit.SUCCEEDED
    assert main(["wait", "web-1.4.2", "--interval", "1", "--timeout", "10m"]) == Exit.CANCELLED


def test_a_release_waiting_for_an_approval_past_the_timeout_exits_5(served, tmp_path):
    code = publish(tmp_path, event(promotion="manual"), "--wait", "--timeout", "30m")
    assert code == Exit.WAITING_FOR_A_PERSON
    assert served.service.get("web-1.4.2").phase is Phase.AWAITING_APPROVAL


def test_an_event_the_controller_refuses_exits_7_naming_why(served, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RELEASECTL_SIGNING_KEY", "not-the-key")
    assert publish(tmp_path, CANARY_EVENT, "--wait") == Exit.REJECTED
    assert "signature" in capsys.readouterr().err
    assert served.service.list().items == []


def test_an_invalid_event_is_a_usage_error_before_anything_is_sent(served, tmp_path, capsys):
    bad = event(strategy={"type": "canary", "steps": [{"weight": 150, "bake": "1m"}]})
    assert publish(tmp_path, bad) == Exit.USAGE
    assert "strategy.steps[0].weight" in capsys.readouterr().err
    assert served.service.list().items == []


def test_an_unsigned_event_is_refused_locally(served, tmp_path, capsys):
    path = tmp_path / "release.json"
    path.write_text(json.dumps(CANARY_EVENT))
    assert main(["publish", "-f", str(path)]) == Exit.USAGE
    assert "--key-id" in capsys.readouterr().err


def test_an_unreachable_controller_exits_8(tmp_path, monkeypatch):
    monkeypatch.setenv("RELEASECTL_SIGNING_KEY", TEST_KEY)
    monkeypatch.delenv("RELEASECTL_SERVICEBUS_CONNECTION", raising=False)
    path = tmp_path / "release.json"
    path.write_text(json.dumps(CANARY_EVENT))
    code = main(["publish", "-f", str(path), "--key-id", TEST_KEY_ID, "--api", "http://127.0.0.1:9"])
    assert code == Exit.UNREACHABLE


def test_flags_build_the_event_and_ci_metadata_is_recorded(served, monkeypatch):
    monkeypatch.setenv("GITHUB_SHA", "7f3c9e1")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "contoso/web")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    target = CANARY_EVENT["target"]
    code = main(
        [
            "publish",
            "--release-id", "web-2.0.0",
            "--version", "2.0.0",
            "--subscription", target["subscriptionId"],
            "--resource-group", target["resourceGroup"],
            "--site", target["site"],
            "--image", "contoso.azurecr.io/web:2.0.0",
            "--strategy", "canary",
            "--steps", "10:5m,50:5m",
            "--check", "/healthz",
            "--key-id", TEST_KEY_ID,
        ]
    )  # fmt: skip
    assert code == Exit.SUCCEEDED
    spec = served.service.get("web-2.0.0").spec
    assert [s.weight for s in spec.strategy.steps] == [10, 50]
    assert spec.metadata.commit == "7f3c9e1"
    assert spec.metadata.pipeline_url == "https://github.com/contoso/web/actions/runs/42"


def test_reads_and_overrides_speak_json_and_name_the_missing_role(served, tmp_path, capsys):
    assert publish(tmp_path, CANARY_EVENT) == Exit.SUCCEEDED
    capsys.readouterr()
    assert main(["status", "web-1.4.2", "--output", "json"]) == Exit.SUCCEEDED
    assert json.loads(capsys.readouterr().out)["phase"] == "deploying"
    assert main(["pause", "web-1.4.2", "--reason", "looking"]) == Exit.SUCCEEDED
    assert served.service.get("web-1.4.2").paused
    capsys.readouterr()
    assert main(["audit", "web-1.4.2", "--output", "json"]) == Exit.SUCCEEDED
    entries = json.loads(capsys.readouterr().out)
    assert "looking" in entries[-1]["message"] and "olga" in entries[-1]["actor"]
    assert main(["approve", "web-1.4.2", "--reason", "ok"]) == Exit.REJECTED
    assert "approver" in capsys.readouterr().err
    assert main(["list", "--output", "json"]) == Exit.SUCCEEDED
    assert [r["releaseId"] for r in json.loads(capsys.readouterr().out)["items"]] == ["web-1.4.2"]


def test_watch_shows_the_phase_the_split_the_numbers_and_the_audit_as_it_goes(served, tmp_path, capsys, indexed):
    from rich.console import Console

    from releasectl import render
    from releasectl.client import Api

    assert publish(tmp_path, CANARY_EVENT) == Exit.SUCCEEDED
    api = Api(os.environ["RELEASECTL_API"])
    for _ in range(12):  # into the first step, with a measurement
        tick(indexed, served, 60)
        view = api.release("web-1.4.2")
        if view and view["analysis"]["evidence"]:
            break
    assert view is not None and view["phase"] == "shifting"
    console = Console(record=True, width=120, force_terminal=False)
    console.print(render.live_view(view, api.audit("web-1.4.2")))
    screen = console.export_text()
    assert "shifting" in screen and "step 1/" in screen
    share = int(view["weight"])
    assert f"{share:>3} %" in screen and f"{100 - share:>3} %" in screen, "the split"
    assert "http: new 0/100 errors" in screen, "the latest analysis numbers"
    assert "step.started" in screen, "the latest audit lines"
    capsys.readouterr()
    assert main(["watch", "web-1.4.2", "--interval", "1"]) == Exit.SUCCEEDED
    assert "succeeded" in capsys.readouterr().err, "the last frame stays on the terminal"


def test_redeploy_and_quarantine_from_the_command_line(served, tmp_path, capsys, indexed, monkeypatch):
    from tests.functions.test_handlers import roll_back_a_bad_canary

    site = f"{SUBSCRIPTION}/rg-web/contoso-web"
    assert main(["redeploy", "--from", site, "--to", "nope", "--reason", "dr"]) == Exit.USAGE
    assert main(["redeploy", "--from", site, "--to", f"{site}-dr", "--reason", "dr"]) == Exit.REJECTED
    assert "no release that succeeded" in capsys.readouterr().err
    roll_back_a_bad_canary(indexed, served)
    assert main(["quarantine", "list", "--output", "json"]) == Exit.SUCCEEDED
    (entry,) = json.loads(capsys.readouterr().out)["items"]
    assert (entry["version"], entry["site"]) == ("1.4.2", "contoso-web")
    assert main(["quarantine", "lift", site, "1.4.2", "--reason", "config fixed"]) == Exit.REJECTED
    assert "admin" in capsys.readouterr().err
    monkeypatch.setenv("RELEASECTL_LOCAL_PRINCIPAL", principal("ada", ["reader", "admin"]))
    assert main(["quarantine", "lift", site, "1.4.2", "--reason", "config fixed"]) == Exit.SUCCEEDED
    assert "may be released on contoso-web again" in capsys.readouterr().out
    assert main(["quarantine", "list"]) == Exit.SUCCEEDED
    assert "nothing quarantined" in capsys.readouterr().out


def test_a_rollout_is_published_and_watched_to_its_end(served, tmp_path, capsys):
    doc = {k: v for k, v in CANARY_EVENT.items() if k not in ("releaseId", "target")}
    doc["rolloutId"] = "fleet-2.0"
    doc["targets"] = [
        {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "site": name, "region": region}
        for name, region in (("web-weu", "westeurope"), ("web-eus", "eastus"))
    ]
    doc["waves"] = [{"sites": ["web-weu"]}, {"sites": ["web-eus"]}]
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(doc))
    assert main(["rollout", "publish", "-f", str(path), "--key-id", TEST_KEY_ID]) == Exit.SUCCEEDED
    assert "wave 1  web-weu" in capsys.readouterr().out
    assert main(["watch", "fleet-2.0", "--interval", "1", "--timeout", "3h"]) == Exit.SUCCEEDED  # a rollout's id
    out = capsys.readouterr().out
    assert "fleet-2.0 succeeded" in out and out.count("succeeded") >= 3
    assert main(["rollout", "status", "fleet-2.0", "--output", "json"]) == Exit.SUCCEEDED
    view = json.loads(capsys.readouterr().out)
    assert [s["phase"] for s in view["sites"]] == ["succeeded", "succeeded"]
