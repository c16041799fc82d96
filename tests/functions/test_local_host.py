"""The local Functions host used by the demo indexes and serves the app like the real host."""

from __future__ import annotations

import json

import pytest

from devstack.funchost import HostError, LocalFunctionHost, _route_pattern, _schedule_seconds
from shared.authority.proofs import sign
from tests.builders import CANARY_EVENT, TEST_KEY, TEST_KEY_ID
from tests.functions.test_handlers import principal

SETTINGS = {
    "RELEASE_EVENTS_TOPIC": "t",
    "RELEASE_EVENTS_SUBSCRIPTION": "s",
    "RECONCILE_SCHEDULE": "*/5 * * * * *",
    "WORK_QUEUE_NAME": "w",
}


@pytest.fixture
def host(app):
    # A fresh app object: get_functions() runs once per FunctionApp.
    import azure.functions as func

    import function_app

    fresh = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for module in (
        "functions.release_events",
        "functions.reconcile_timer",
        "functions.reconcile_worker",
        "functions.http_api",
        "functions.dashboard",
    ):
        fresh.register_functions(__import__(module, fromlist=["bp"]).bp)
    assert function_app.app is not fresh
    return LocalFunctionHost(fresh, SETTINGS, function_key="k")


def test_it_finds_every_trigger_of_the_app(host):
    assert {r.name for r in host.routes} == {
        "submit_release",
        "list_releases",
        "get_release",
        "get_release_audit",
        "get_release_evidence",
        "override_release",
        "get_policy",
        "get_stats",
        "list_rejections",
        "healthz",
        "list_quarantine",
        "lift_quarantine",
        "redeploy_site",
        "get_control",
        "set_control",
        "submit_rollout",
        "list_rollouts",
        "get_rollout",
        "dashboard",
        "dashboard_release",
        "dashboard_action",
        "dashboard_rollout",
    }
    assert [(name, seconds) for name, seconds, _ in host.timers] == [("reconcile_timer", 5.0)]
    assert list(host.service_bus) == ["release_events"]
    assert [(t.function_name, t.queue_name, t.connection_setting) for t in host.queue_triggers] == [
        ("reconcile_worker", "w", "WorkQueue")
    ]


SIGNED_IN = {"x-ms-client-principal": principal("olga", ["reader", "submitter", "operator"])}


def test_function_keys_are_enforced_except_on_anonymous_routes(host):
    assert host.handle("GET", "/api/releases", SIGNED_IN, b"")[0] == 401
    assert host.handle("GET", "/api/releases?code=wrong", SIGNED_IN, b"")[0] == 401
    assert host.handle("GET", "/api/releases?code=k", SIGNED_IN, b"")[0] == 200
    assert host.handle("GET", "/api/releases?code=k", {}, b"")[0] == 401, "a key alone is not a person"
    assert host.handle("GET", "/api/healthz", {}, b"")[0] == 200
    assert host.handle("GET", "/api/nowhere", {"x-functions-key": "k"}, b"")[0] == 404


def test_routes_bind_their_parameters(host):
    headers = {"x-functions-key": "k", "content-type": "application/json", **SIGNED_IN}
    status, _, body = host.handle("POST", "/api/releases", headers, json.dumps(CANARY_EVENT).encode())
    assert status == 201
    status, _, body = host.handle("GET", "/api/releases/web-1.4.2/audit", headers, b"")
    assert status == 200 and json.loads(body)["releaseId"] == "web-1.4.2"
    status, out, body = host.handle("POST", "/api/releases/web-1.4.2/pause", headers, b'{"reason": "demo"}')
    assert status == 202 and out["Content-Type"] == "application/json"


def test_a_service_bus_delivery_reaches_the_trigger(host, app):
    raw = json.dumps(CANARY_EVENT).encode()
    signed = {"releaseSignature": sign(raw, TEST_KEY), "releaseKeyId": TEST_KEY_ID}
    status, _, _ = host.deliver(raw, message_id="m-1", application_properties=signed)
    assert status == 202
    assert app.service.get("web-1.4.2").phase.value == "deploying"


def test_it_refuses_what_the_real_host_would_refuse():
    assert _schedule_seconds("*/30 * * * * *") == 30
    with pytest.raises(HostError):
        _schedule_seconds("0 */5 * * * *")
    assert _route_pattern("releases/{releaseId}/{action}").match("releases/a/pause").groupdict() == {
        "releaseId": "a",
        "action": "pause",
    }
    import function_app

    with pytest.raises(HostError, match="RELEASE_EVENTS_TOPIC"):
        fresh = __import__("azure.functions", fromlist=["FunctionApp"]).FunctionApp()
        fresh.register_functions(__import__("functions.release_events", fromlist=["bp"]).bp)
        LocalFunctionHost(fresh, {}, function_key="k")
    assert function_app.app
