"""The local App Service emulator answers like Azure: wire shapes of Microsoft's own examples,
api-version and auth checks, loud failures for what it does not implement, a front door that
splits and pins traffic, and metrics from what it really served."""

from __future__ import annotations

import json
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
    session.headers["Authorization"] = f"Bearer {arm_token()}"

    def call(method, path, **kw):
        return session.request(method, emulator.arm_url + path, timeout=5, **kw)

    yield call
    session.close()


def arm_token() -> str:
    from devstack.credentials import EmulatorCredential

    return EmulatorCredential().get_token("https://management.azure.com/.default").token


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
    ("credential", "code"),
    [
        ({"audience": "https://graph.microsoft.com"}, "InvalidAuthenticationTokenAudience"),
        ({"lifetime_seconds": -10}, "ExpiredAuthenticationToken"),
    ],
)
def test_a_token_for_another_audience_or_expired_is_refused_as_arm_does(emulator, credential, code):
    from devstack.credentials import EmulatorCredential

    token = EmulatorCredential(**credential).get_token("https://management.azure.com/.default").token
    response = requests.get(
        f"{emulator.arm_url}{SITE_PATH}?{WEB}",
        headers={"Authorization": f"Bearer {token}"},
        verify=emulator.ca_file,
        timeout=5,
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == code


def test_slot_settings_names_are_read_and_written_and_stay_with_their_slot_on_a_swap(arm, emulator, clock):
    names = {"properties": {"appSettingNames": ["DB"], "connectionStringNames": []}}
    assert arm("PUT", f"{SITE_PATH}/config/slotConfigNames?{WEB}", json=names).ok
    assert arm("GET", f"{SITE_PATH}/config/slotConfigNames?{WEB}").json()["properties"]["appSettingNames"] == ["DB"]
    site = emulator.site(SITE)
    site.production.settings.update(DB="prod-db", FEATURE="old")
    site.slots["staging"].settings.update(DB="staging-db", FEATURE="new")
    arm("POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json=SWAP)
    clock.advance(120)
    arm("GET", f"{SITE_PATH}?{WEB}")
    assert (site.production.settings["DB"], site.production.settings["FEATURE"]) == ("prod-db", "new")


def test_a_management_lock_refuses_every_write_with_scope_locked(arm, emulator):
    emulator.site(SITE).locked = True
    response = arm("PUT", f"{SITE_PATH}/slots/staging/config/appsettings?{WEB}", json={"properties": {}})
    assert response.status_code == 409 and response.json()["error"]["code"] == "ScopeLocked"
    assert arm("POST", f"{SITE_PATH}/config/appsettings/list?{WEB}").ok, "reads still work"


def test_errors_come_in_both_of_azures_shapes_and_429_says_when_to_retry(arm, emulator):
    emulator.inject("/config/web", method="GET", status=429, code="TooManyRequests", retry_after=42)
    emulator.inject("/config/web", method="GET", status=400, code="BadRequest", message="no", shape="appservice")
    throttled = arm("GET", f"{SITE_PATH}/config/web?{WEB}")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "42"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    own = arm("GET", f"{SITE_PATH}/config/web?{WEB}").json()
    assert own["Code"] == "BadRequest" and own["Message"] == "no" and own["Details"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", ""),
        ("GET", "/config/connectionstrings"),
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


SWAP = {"targetSlot": "production", "preserveVnet": True}


def test_a_swap_answers_as_the_spec_says_202_location_and_retry_after_only(arm, emulator, clock):
    response = arm("POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json=SWAP)
    assert response.status_code == 202
    assert "Azure-AsyncOperation" not in response.headers, "WebApps_SwapSlot declares Location only"
    assert "/operationresults/" in response.headers["Location"] and int(response.headers["Retry-After"]) > 0
    assert arm("POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json=SWAP).status_code == 409, "one at a time"
    location = response.headers["Location"].replace(emulator.arm_url, "")
    running = arm("GET", location)
    assert running.status_code == 202 and running.content == b""
    clock.advance(60)
    assert arm("GET", location).status_code == 202, "a swap takes minutes"
    clock.advance(60)
    done = arm("GET", location)
    assert done.status_code == 200
    op_id = location.split("/operationresults/")[1].split("?")[0]
    operation = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Web/locations/westeurope/operations/{op_id}?{WEB}"
    assert arm("GET", operation).status_code == 204, "the operations route tells nothing"


def test_a_failed_swap_answers_its_location_with_an_app_service_error_body(arm, emulator, clock):
    emulator.fail_next_swap("SwapFailed", "Cannot swap: the site is stopped", status=409)
    response = arm("POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json=SWAP)
    clock.advance(120)
    failed = arm("GET", response.headers["Location"].replace(emulator.arm_url, ""))
    assert failed.status_code == 409
    assert failed.json()["Code"] == "SwapFailed" and "stopped" in failed.json()["Message"]


def test_the_azure_async_operation_shape_can_be_asked_for(clock):
    from devstack.appservice import AppServiceEmulator
    from tests.e2e.conftest import emulator_config

    with AppServiceEmulator(emulator_config(clock, async_operation_header=True)) as emulator:
        session = requests.Session()
        session.verify, session.trust_env = emulator.ca_file, False
        session.headers["Authorization"] = f"Bearer {arm_token()}"
        response = session.post(f"{emulator.arm_url}{SITE_PATH}/slots/staging/slotsswap?{WEB}", json=SWAP, timeout=5)
        status = response.headers["Azure-AsyncOperation"]
        assert session.get(status, timeout=5).json()["status"] == "InProgress"
        clock.advance(120)
        assert session.get(status, timeout=5).json()["status"] == "Succeeded"
        session.close()


def test_a_swap_warms_the_slot_up_on_its_warm_up_path_and_fails_on_a_wrong_status(arm, emulator, clock):
    staging = emulator.site(SITE).slots["staging"]
    staging.settings.update(
        WEBSITE_SWAP_WARMUP_PING_PATH="/healthz", WEBSITE_SWAP_WARMUP_PING_STATUSES="200", EMULATOR_HEALTH_STATUS="503"
    )
    response = arm("POST", f"{SITE_PATH}/slots/staging/slotsswap?{WEB}", json=SWAP)
    clock.advance(120)
    failed = arm("GET", response.headers["Location"].replace(emulator.arm_url, ""))
    assert failed.status_code == 417 and failed.json()["Code"] == "ExpectationFailed"
    assert "/healthz" in failed.json()["Message"] and "503" in failed.json()["Message"]
    assert emulator.cloud.warmups[-1] == (SITE, "/healthz", 503)
    assert emulator.site(SITE).production.settings.get("EMULATOR_HEALTH_STATUS") is None, "nothing was swapped"


def test_a_settings_write_restarts_the_slot_which_answers_503_until_it_has_started(arm, emulator, clock):
    staging = emulator.site(SITE).slots["staging"]
    url = f"https://{staging.host}/"
    assert arm("PUT", f"{SITE_PATH}/slots/staging/config/appsettings?{WEB}", json={"properties": {"A": "1"}}).ok
    assert requests.get(url, verify=emulator.ca_file, timeout=5).status_code == 503
    clock.advance(29)
    assert requests.get(url, verify=emulator.ca_file, timeout=5).status_code == 503
    clock.advance(2)
    assert requests.get(url, verify=emulator.ca_file, timeout=5).status_code == 200
    requests_before = staging.metrics.totals(0, 2**40)[0]
    assert requests_before == 1, "the front end's 503s while starting are not the app's"
    patch = {"properties": {"linuxFxVersion": "DOCKER|contoso.azurecr.io/web:9"}}
    assert arm("PATCH", f"{SITE_PATH}/slots/staging/config/web?{WEB}", json=patch).ok
    assert requests.get(url, verify=emulator.ca_file, timeout=5).status_code == 503, "a new image restarts it too"


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
    # Without a rule for the slot, a pinned visitor is served by production (Learn: manual routing
    # needs a rule, a 0 % one at least).
    assert arm("PATCH", f"{SITE_PATH}/config/web?{WEB}", json={"properties": {"experiments": {"rampUpRules": []}}}).ok
    session.cookies.set("x-ms-routing-name", "staging")
    assert {session.get(url, timeout=5).json()["version"] for _ in range(10)} == {"1.0.0"}, "production serves it"
    zero = {**rule, "reroutePercentage": 0.0}
    assert arm(
        "PATCH", f"{SITE_PATH}/config/web?{WEB}", json={"properties": {"experiments": {"rampUpRules": [zero]}}}
    ).ok
    session.cookies.set("x-ms-routing-name", "staging")
    assert session.get(url, timeout=5).json()["version"] == "2.0", "a 0 % rule keeps manual routing"


def metrics(arm, start, end, interval="PT1M"):
    span = f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
    return arm(
        "GET",
        f"{SITE_PATH}/slots/staging/providers/Microsoft.Insights/metrics?api-version=2024-02-01"
        f"&metricnames=Requests,Http5xx,HttpResponseTime&timespan={span}&interval={interval}&aggregation=Total,Average",
    ).json()


def test_metrics_count_what_the_slot_really_served_in_minute_buckets_that_arrive_late(arm, emulator, clock):
    site = emulator.site(SITE)
    site.slots["staging"].settings.update(EMULATOR_ERROR_RATE="0.5", EMULATOR_LATENCY_MS="20")
    minute = clock.now().replace(second=0, microsecond=0)
    clock.advance((minute + timedelta(seconds=10) - clock.now()).total_seconds())
    for _ in range(40):
        requests.get(f"https://{site.slots['staging'].host}/", verify=emulator.ca_file, timeout=5)
    span = (minute - timedelta(minutes=1), minute + timedelta(minutes=2))
    clock.advance(60)
    fresh = {m["name"]["value"]: m["timeseries"][0]["data"] for m in metrics(arm, *span)["value"]}
    assert all("total" not in p for p in fresh["Requests"]), "the newest minutes are not there yet"
    clock.advance(180)
    doc = metrics(arm, *span)
    late = {m["name"]["value"]: m["timeseries"][0]["data"] for m in doc["value"]}
    assert [p.get("total") for p in late["Requests"]] == [0.0, 40.0, 0.0]
    assert 10 <= late["Http5xx"][1]["total"] <= 30
    assert 0.015 <= late["HttpResponseTime"][1]["average"] <= 0.5
    assert doc["interval"] == "PT1M"
    whole = metrics(arm, *span, interval="FULL")["value"][0]["timeseries"][0]["data"][0]
    assert whole["total"] == 40


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
            headers={"Authorization": f"Bearer {arm_token()}"},
            verify=described["caFile"],
            timeout=5,
        )
        assert arm.json()["properties"]["defaultHostName"] == site["slots"]["staging"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
