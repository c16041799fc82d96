"""Bad input on the routes of rollouts, redeploys, quarantine and the stop switch: every case is a
4xx problem+json naming the field (never a 500, never stack text) and starts nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.authority.proofs import sign
from tests.builders import CANARY_EVENT, SUBSCRIPTION, TEST_KEY, TEST_KEY_ID
from tests.functions.test_handlers import http, principal

TEMPLATE = {k: v for k, v in CANARY_EVENT.items() if k not in ("releaseId", "target")}
TARGETS = [{"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "site": s} for s in ("web-one", "web-two")]
GOOD = {**TEMPLATE, "rolloutId": "fleet-1", "targets": TARGETS, "waves": [{"sites": ["web-one", "web-two"]}]}


def changed(**fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


ROLLOUTS: list[tuple[str, Any, str]] = [
    ("not json", b"{", "(body)"),
    ("an array", b"[]", "(body)"),
    ("no rollout id", changed(rolloutId=None), "rolloutId"),
    ("a number as rollout id", changed(rolloutId=7), "rolloutId"),
    ("a target as well", changed(target=TARGETS[0]), "target"),
    ("no targets", changed(targets=[]), "targets"),
    ("targets not a list", changed(targets={"a": 1}), "targets"),
    ("a target not an object", changed(targets=["web-one"]), "targets[0]"),
    ("a bad site name", changed(targets=[{**TARGETS[0], "site": "-x"}, TARGETS[1]]), "targets[0].site"),
    ("a site as a number", changed(targets=[{**TARGETS[0], "site": 5}, TARGETS[1]]), "targets[0].site"),
    ("a bad region", changed(targets=[{**TARGETS[0], "region": "West Europe!"}, TARGETS[1]]), "targets[0].region"),
    ("a site twice", changed(targets=[TARGETS[0], TARGETS[0]]), "targets[1].site"),
    ("no waves", changed(waves=None), "waves"),
    ("waves not a list", changed(waves="all"), "waves"),
    ("a wave not an object", changed(waves=[["web-one"]]), "waves[0]"),
    ("a wave with an unknown key", changed(waves=[{"sites": ["web-one", "web-two"], "x": 1}]), "waves[0]"),
    ("a wave without sites", changed(waves=[{"sites": []}, {"sites": ["web-two"]}]), "waves[0].sites"),
    ("sites as numbers", changed(waves=[{"sites": [1, 2]}]), "waves[0].sites"),
    ("an unknown site", changed(waves=[{"sites": ["web-one", "web-three"]}]), "waves[0].sites"),
    (
        "a site in two waves",
        changed(waves=[{"sites": ["web-one", "web-two"]}, {"sites": ["web-two"]}]),
        "waves[1].sites",
    ),
    ("a site in no wave", changed(waves=[{"sites": ["web-one"]}]), "waves"),
    ("maxInFlight zero", changed(waves=[{"sites": ["web-one", "web-two"], "maxInFlight": 0}]), "waves[0].maxInFlight"),
    (
        "maxInFlight a bool",
        changed(waves=[{"sites": ["web-one", "web-two"], "maxInFlight": True}]),
        "waves[0].maxInFlight",
    ),
    ("a bad bake", changed(waves=[{"sites": ["web-one", "web-two"], "bake": "soon"}]), "waves[0].bake"),
    ("a bake too long", changed(waves=[{"sites": ["web-one", "web-two"], "bake": "30d"}]), "waves[0].bake"),
    ("a bake with a fraction", changed(waves=[{"sites": ["web-one", "web-two"], "bake": 1.5}]), "waves[0].bake"),
    ("a bake of null", changed(waves=[{"sites": ["web-one", "web-two"], "bake": None}]), "waves[0].bake"),
    ("a bake as an object", changed(waves=[{"sites": ["web-one", "web-two"], "bake": {}}]), "waves[0].bake"),
    ("a colon in the rollout id", changed(rolloutId="fleet:1"), "rolloutId"),
    ("a rollout id too long", changed(rolloutId="r" * 57), "rolloutId"),
    ("a bad plan", changed(strategy="fast"), "strategy"),
    ("no version", changed(version=None), "version"),
]


@pytest.mark.parametrize(("name", "doc", "field"), ROLLOUTS, ids=[c[0] for c in ROLLOUTS])
def test_a_bad_rollout_is_a_problem_naming_the_field(indexed, app, name, doc, field):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {"X-Release-Signature-256": sign(raw, TEST_KEY), "X-Release-Key-Id": TEST_KEY_ID}
    response, problem = http(indexed, "submit_rollout", "POST", "/api/rollouts", raw=raw, headers=headers, who="sam")
    assert response.status_code == 400, problem
    assert response.mimetype == "application/problem+json"
    assert field in [e["field"] for e in problem["errors"]], problem["errors"]
    assert "Traceback" not in json.dumps(problem)
    assert app.service.rollouts() == [] and app.service.list(limit=5).items == []


REDEPLOYS: list[tuple[str, Any, str]] = [
    ("not json", b"[", "(body)"),
    ("not an object", b"[]", "(body)"),
    ("no reason", {"to": {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg", "site": "web-dr"}}, "reason"),
    ("no target", {"reason": "dr"}, "to"),
    ("a target as a string", {"to": "web-dr", "reason": "dr"}, "to"),
    (
        "a bad subscription",
        {"to": {"subscriptionId": "x", "resourceGroup": "rg", "site": "web-dr"}, "reason": "dr"},
        "to.subscriptionId",
    ),
    (
        "an unknown key",
        {"to": {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg", "site": "web-dr", "x": 1}, "reason": "dr"},
        "to.x",
    ),
    (
        "a multi-line reason",
        {"to": {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg", "site": "web-dr"}, "reason": "a\nb"},
        "reason",
    ),
]


@pytest.mark.parametrize(("name", "doc", "field"), REDEPLOYS, ids=[c[0] for c in REDEPLOYS])
def test_a_bad_redeploy_is_a_problem_naming_the_field(indexed, app, name, doc, field):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    key = f"{SUBSCRIPTION}~rg-web~contoso-web"
    response, problem = http(
        indexed, "redeploy_site", "POST", f"/api/sites/{key}/redeploy", raw=raw, route={"siteKey": key}, who="olga"
    )
    assert response.status_code == 400, problem
    assert field in [e["field"] for e in problem["errors"]], problem["errors"]


@pytest.mark.parametrize("site_key", ["", "no-tildes", "a~b", "~" * 500, "a~b~c~d"])
def test_a_bad_site_key_is_a_problem_not_an_error(indexed, app, site_key):
    admin = {"X-MS-CLIENT-PRINCIPAL": principal("ada", ["admin", "operator", "reader"])}
    for name, path in (
        ("redeploy_site", f"/api/sites/{site_key}/redeploy"),
        ("lift_quarantine", f"/api/sites/{site_key}/quarantine/1.0/lift"),
    ):
        response, problem = http(
            indexed,
            name,
            "POST",
            path,
            payload={"reason": "x", "to": TARGETS[0]},
            route={"siteKey": site_key, "version": "1.0"},
            headers=admin,
        )
        assert response.status_code in (400, 404), (name, site_key, problem)


@pytest.mark.parametrize("action", ["pause", "STOP", "", "stop/now"])
def test_an_unknown_control_action_is_a_404(indexed, app, action):
    admin = {"X-MS-CLIENT-PRINCIPAL": principal("ada", ["admin", "reader"])}
    response, _ = http(
        indexed,
        "set_control",
        "POST",
        f"/api/control/{action}",
        payload={"reason": "x"},
        route={"action": action},
        headers=admin,
    )
    assert response.status_code == 404


def test_the_stop_switch_needs_an_admin_and_a_reason(indexed, app):
    operator = {"X-MS-CLIENT-PRINCIPAL": principal("olga", ["operator", "reader"])}
    admin = {"X-MS-CLIENT-PRINCIPAL": principal("ada", ["admin", "reader"])}
    refused, problem = http(
        indexed,
        "set_control",
        "POST",
        "/api/control/stop",
        payload={"reason": "x"},
        route={"action": "stop"},
        headers=operator,
    )
    assert refused.status_code == 403 and problem["missingRole"] == "admin"
    missing, _ = http(
        indexed, "set_control", "POST", "/api/control/stop", payload={}, route={"action": "stop"}, headers=admin
    )
    assert missing.status_code == 400
    stopped, doc = http(
        indexed,
        "set_control",
        "POST",
        "/api/control/stop",
        payload={"reason": "incident"},
        route={"action": "stop"},
        headers=admin,
    )
    assert stopped.status_code == 200 and doc["stopped"] and doc["reason"] == "incident"
    shown, doc = http(indexed, "get_control", path="/api/control", who="rita")
    assert shown.status_code == 200 and doc["stopped"] and doc["by"].startswith("ada")
    started, doc = http(
        indexed,
        "set_control",
        "POST",
        "/api/control/start",
        payload={"reason": "over"},
        route={"action": "start"},
        headers=admin,
    )
    assert started.status_code == 200 and not doc["stopped"]


def test_a_rollout_id_reused_for_another_plan_is_a_conflict(indexed, app):
    def send(doc):
        raw = json.dumps(doc).encode()
        headers = {"X-Release-Signature-256": sign(raw, TEST_KEY), "X-Release-Key-Id": TEST_KEY_ID}
        return http(indexed, "submit_rollout", "POST", "/api/rollouts", raw=raw, headers=headers, who="sam")

    assert send(GOOD)[0].status_code == 201
    assert send(GOOD)[0].status_code == 200, "the same rollout again"
    conflict, problem = send(changed(version="9.9.9"))
    assert conflict.status_code == 409 and problem["errors"][0]["field"] == "rolloutId"
    assert app.service.get_rollout("fleet-1").spec.version == GOOD["version"]
