"""The local App Service emulator answers like Azure: wire shapes of Microsoft's own examples,
api-version and auth checks, loud failures for what it does not implement, a front door that
splits and pins traffic, and metrics from what it really served."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import RG, SITE, SUBSCRIPTION

EXAMPLES = Path(__file__).parent / "azure_examples"
SITE_PATH = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{SITE}"
WEB = "api-version=2025-05-01"


def example(name: str) -> dict:
    doc = json.loads((EXAMPLES / f"{name}.json").read_text())
    return doc["responses"]["200"]["body"]


@pytest.fixture
def arm(emulator):
    session = requests.Session()
    session.verify = emulator.ca_file
    session.trust_env = False
    session.headers["Authorization"] = "Bearer test"

    def call(method, path, **kw):
        return session.request(method, emulator.arm_url + path, timeout=5, **kw)

    yield call
    session.close()


def keys(doc: dict) -> set[str]:
    return set(doc)


@pytest.mark.parametrize(
    ("name", "method", "path", "body"),
    [
        ("GetWebApp", "GET", "", None),
        ("GetWebAppSlot", "GET", "/slots/staging", None),
        ("GetSiteConfig", "GET", "/config/web", None),
        ("ListAppSettings", "POST", "/config/appsettings/list", None),
        ("UpdateAppSettings", "PUT", "/config/appsettings", {"properties": {"Setting1": "Value1"}}),
        ("ListWebAppSlots", "GET", "/slots", None),
    ],
)
def test_responses_have_the_shape_of_microsofts_examples(arm, name, method, path, body):
    ours = arm(method, f"{SITE_PATH}{path}?{WEB}", json=body)
    assert ours.status_code == 200, ours.text
    theirs = example(name)
    doc = ours.json()
    assert keys(doc) == keys(theirs)
    if "value" in theirs:
        doc, theirs = doc["value"][0], theirs["value"][0]
        assert keys(doc) == keys(theirs)
    if name.startswith("Get") and name != "GetSiteConfig":
        extra = keys(doc["properties"]) - keys(theirs["properties"]) - {"slotSwapStatus"}
        assert not extra, f"properties Azure does not send: {extra}"
        assert doc["type"] == theirs["type"]
    if name == "GetWebAppSlot":
        assert doc["name"] == f"{SITE}/staging"


def test_the_metrics_response_has_the_shape_of_microsofts_example(arm):
    end = datetime.now(UTC)
    start = end - timedelta(minutes=5)
    span = f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
    ours = arm(
        "GET",
        f"{SITE_PATH}/slots/staging/providers/Microsoft.Insights/metrics?api-version=2024-02-01"
        f"&metricnames=Requests,Http5xx&timespan={span}&interval=PT1M&aggregation=Total",
    )
    assert ours.status_code == 200, ours.text
    theirs = example("GetMetric")
    doc = ours.json()
    assert keys(doc) == keys(theirs)
    assert keys(doc["value"][0]) == keys(theirs["value"][0])
    assert keys(doc["value"][0]["timeseries"][0]) == keys(theirs["value"][0]["timeseries"][0])
    assert [m["name"]["value"] for m in doc["value"]] == ["Requests", "Http5xx"]


def test_the_api_version_is_checked(arm):
    missing = arm("GET", SITE_PATH)
    wrong = arm("GET", f"{SITE_PATH}?api-version=2022-03-01")
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "MissingApiVersionParameter")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "InvalidApiVersionParameter")


def test_a_request_without_a_bearer_token_is_refused(emulator):
    response = requests.get(f"{emulator.arm_url}{SITE_PATH}?{WEB}", verify=emulator.ca_file, timeout=5)
    assert response.status_code == 401 and response.json()["error"]["code"] == "AuthenticationFailed"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", ""),
        ("GET", "/config/slotConfigNames"),
        ("POST", "/slotsswap"),
        ("GET", "/slots/staging/config/authsettings"),
        ("POST", "/slots/staging/applySlotConfig"),
    ],
)
def test_what_is_not_implemented_fails_loudly(arm, method, path):
    response = arm(method, f"{SITE_PATH}{path}?{WEB}", json={})
    assert response.status_code == 404
    assert "does not implement" in response.json()["error"]["message"]


def test_an_unknown_site_or_slot_is_a_404_like_azure(arm):
    site = arm("GET", SITE_PATH.replace(SITE, "nope") + f"?{WEB}")
    slot = arm("GET", f"{SITE_PATH}/slots/blue?{WEB}")
    assert site.status_code == slot.status_code == 404
    assert site.json()["error"]["code"] == "ResourceNotFound"


def test_bad_bodies_are_400(arm):
    assert arm("PATCH", f"{SITE_PATH}/config/web?{WEB}", data=b"not json").status_code == 400
    bad_rule = {"properties": {"experiments": {"rampUpRules": [{"actionHostName": "x", "reroutePercentage": 120}]}}}
    assert arm("PATCH", f"{SITE_PATH}/config/web?{WEB}", json=bad_rule).status_code == 400
    assert arm("PUT", f"{SITE_PATH}/config/appsettings?{WEB}", json={"properties": {"A": 1}}).status_code == 400
    swap = arm("POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json={"targetSlot": "qa", "preserveVnet": True})
    assert swap.status_code == 400


def test_a_swap_is_a_long_running_operation_with_azure_headers(arm, emulator):
    response = arm(
        "POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json={"targetSlot": "production", "preserveVnet": True}
    )
    assert response.status_code == 202
    assert "/operations/" in response.headers["Azure-AsyncOperation"]
    assert "/operationresults/" in response.headers["Location"]
    second = arm(
        "POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json={"targetSlot": "production", "preserveVnet": True}
    )
    assert second.status_code == 409, "one swap at a time"
    status_url = response.headers["Azure-AsyncOperation"].replace(emulator.arm_url, "")
    assert arm("GET", status_url).json()["status"] == "InProgress"
    time.sleep(0.4)
    assert arm("GET", status_url).json()["status"] == "Succeeded"
    assert arm("GET", response.headers["Location"].replace(emulator.arm_url, "")).status_code == 200


def test_the_front_door_splits_by_the_rule_and_pins_visitors_with_the_routing_cookie(arm, emulator):
    site = emulator.site(SITE)
    site.slots["staging"].settings.update(RELEASE_ID="new", RELEASE_VERSION="2.0")
    rule = {"name": "staging", "actionHostName": site.slots["staging"].host, "reroutePercentage": 30.0}
    assert arm(
        "PATCH", f"{SITE_PATH}/config/web?{WEB}", json={"properties": {"experiments": {"rampUpRules": [rule]}}}
    ).ok
    session = requests.Session()
    session.verify = emulator.ca_file
    session.trust_env = False
    url = f"https://{site.front_door_host}/"
    first = session.get(url, timeout=5)
    pinned = first.json()["version"]
    assert first.cookies.get("x-ms-routing-name") in ("staging", "self")
    assert {session.get(url, timeout=5).json()["version"] for _ in range(50)} == {pinned}, "the cookie pins"
    forced = requests.get(url, params={"x-ms-routing-name": "staging"}, verify=emulator.ca_file, timeout=5)
    assert forced.json()["version"] == "2.0"


def test_metrics_count_what_the_slot_really_served(arm, emulator):
    site = emulator.site(SITE)
    site.slots["staging"].settings.update(EMULATOR_ERROR_RATE="0.5", EMULATOR_LATENCY_MS="20")
    start = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(40):
        requests.get(f"https://{site.slots['staging'].host}/", verify=emulator.ca_file, timeout=5)
    end = datetime.now(UTC) + timedelta(seconds=2)
    span = f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
    doc = arm(
        "GET",
        f"{SITE_PATH}/slots/staging/providers/Microsoft.Insights/metrics?api-version=2024-02-01"
        f"&metricnames=Requests,Http5xx,HttpResponseTime&timespan={span}&interval=FULL&aggregation=Total,Average",
    ).json()
    points = {m["name"]["value"]: m["timeseries"][0]["data"][0] for m in doc["value"]}
    assert points["Requests"]["total"] == 40
    assert 10 <= points["Http5xx"]["total"] <= 30
    assert 0.015 <= points["HttpResponseTime"]["average"] <= 0.5
    assert doc["interval"] == "FULL"


def test_injected_faults_answer_the_next_matching_requests(arm, emulator):
    emulator.inject("/config/web", method="GET", status=429, code="TooManyRequests", times=1)
    assert arm("GET", f"{SITE_PATH}/config/web?{WEB}").status_code == 429
    assert arm("GET", f"{SITE_PATH}/config/web?{WEB}").status_code == 200


def test_the_emulator_runs_as_a_process_of_its_own_and_stops_on_sigterm():
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.appservice", "--config", "devstack/appservice/sites.sample.json"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        while not lines or lines[-1].rstrip() != "}":
            line = process.stdout.readline()
            assert line, "the emulator exited before describing itself"
            lines.append(line)
        described = json.loads("".join(lines))
        site = described["sites"][0]
        response = requests.get(f"https://{site['production']}/", verify=described["caFile"], timeout=5)
        assert response.json()["version"] == "1.0.0"
        arm = requests.get(
            f"{described['armEndpoint']}/subscriptions/{site['subscriptionId']}/resourceGroups/"
            f"{site['resourceGroup']}/providers/Microsoft.Web/sites/{site['name']}/slots/staging?{WEB}",
            headers={"Authorization": "Bearer x"},
            verify=described["caFile"],
            timeout=5,
        )
        assert arm.json()["properties"]["defaultHostName"] == site["slots"]["staging"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
