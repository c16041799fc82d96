"""The bad-input corpus: every case is a 4xx problem+json naming the field over HTTP, or a stored
rejection over Service Bus — never a 500, never a raised trigger, never stack text, and nothing
stored but the rejection."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.authority.proofs import sign
from tests.builders import CANARY_EVENT, TEST_KEY, TEST_KEY_ID, body
from tests.functions.test_handlers import RID, http, override, principal, sb_message, submit

# -- release events: (id, mutation, status over HTTP, field named) -------------------------------------


def with_(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
        return doc

    return mutate


def without(path: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node.pop(last)
        return doc

    return mutate


def raw(data: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda doc: data


EVENTS: list[tuple[str, Callable[[dict[str, Any]], Any], int, str]] = [
    # JSON itself
    ("empty body", raw(b""), 400, "(body)"),
    ("whitespace", raw(b"   \n"), 400, "(body)"),
    ("null", raw(b"null"), 400, "(body)"),
    ("an array", raw(b"[]"), 400, "(body)"),
    ("a number", raw(b"1"), 400, "(body)"),
    ("a string", raw(b'"release"'), 400, "(body)"),
    ("truncated", raw(b'{"releaseId": "x"'), 400, "(body)"),
    ("trailing garbage", raw(body(CANARY_EVENT) + b" }"), 400, "(body)"),
    ("not utf-8", raw(b'{"version": "\xff\xfe"}'), 400, "(body)"),
    ("NaN", raw(body(CANARY_EVENT).replace(b'"bake": "5m"', b'"bake": NaN', 1)), 400, "(body)"),
    ("Infinity", raw(body(CANARY_EVENT).replace(b'"weight": 10', b'"weight": Infinity', 1)), 400, "(body)"),
    ("-Infinity", raw(body(CANARY_EVENT).replace(b'"weight": 10', b'"weight": -Infinity', 1)), 400, "(body)"),
    ("1e999", raw(body(CANARY_EVENT).replace(b'"weight": 10', b'"weight": 1e999', 1)), 400, "(body)"),
    (
        "5000-digit integer",
        raw(body(CANARY_EVENT).replace(b'"weight": 10', b'"weight": ' + b"9" * 5000, 1)),
        400,
        "(body)",
    ),
    ("nesting bomb", raw(b'{"a":' * 10000 + b"1" + b"}" * 10000), 400, "(body)"),
    ("deep arrays", raw(b"[" * 60000), 400, "(body)"),
    ("duplicate top-level key", raw(b'{"version": "1", "version": "2"}'), 400, "version"),
    ("duplicate nested key", raw(body(CANARY_EVENT)[:-1] + b', "target": {"site": "a", "site": "b"}}'), 400, "site"),
    ("lone surrogate in version", raw(body(CANARY_EVENT).replace(b'"1.4.2"', b'"1.4.2\\ud800"', 1)), 400, "version"),
    ("lone surrogate in a setting", raw(body(CANARY_EVENT).replace(b'"on"', b'"\\udfff"', 1)), 400, "appSettings"),
    (
        "lone surrogate in a key",
        raw(body(CANARY_EVENT).replace(b'"FEATURE_CHECKOUT_V2"', b'"\\ud83d"', 1)),
        400,
        "appSettings",
    ),
    ("70 KB event", raw(b'{"a": "' + b"x" * 70000 + b'"}'), 413, ""),
    # the document
    ("unknown top-level field", with_("surprise", 1), 400, "surprise"),
    ("schemaVersion 2", with_("schemaVersion", 2), 400, "schemaVersion"),
    ("releaseId a number", with_("releaseId", 7), 400, "releaseId"),
    ("releaseId empty", with_("releaseId", ""), 400, "releaseId"),
    ("releaseId with a slash", with_("releaseId", "a/b"), 400, "releaseId"),
    ("releaseId with a newline", with_("releaseId", "web-1\n"), 400, "releaseId"),
    ("releaseId too long", with_("releaseId", "x" * 200), 400, "releaseId"),
    ("releaseId path traversal", with_("releaseId", "../../etc"), 400, "releaseId"),
    ("releaseId unicode", with_("releaseId", "wéb-1"), 400, "releaseId"),
    ("releaseId with %", with_("releaseId", "a%2Fb"), 400, "releaseId"),
    ("no target", without("target"), 400, "target"),
    ("target a string", with_("target", "contoso-web"), 400, "target"),
    ("subscription not a GUID", with_("target.subscriptionId", "sub"), 400, "target.subscriptionId"),
    (
        "subscription with newline",
        with_("target.subscriptionId", "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345\n"),
        400,
        "target.subscriptionId",
    ),
    ("resource group with slash", with_("target.resourceGroup", "rg/x"), 400, "target.resourceGroup"),
    ("resource group ending in dot", with_("target.resourceGroup", "rg."), 400, "target.resourceGroup"),
    ("site with newline", with_("target.site", "contoso-web\n"), 400, "target.site"),
    ("site too long", with_("target.site", "a" * 70), 400, "target.site"),
    ("site with dot", with_("target.site", "contoso.web"), 400, "target.site"),
    ("slot production", with_("target.slot", "production"), 400, "target.slot"),
    ("slot production newline", with_("target.slot", "production\n"), 400, "target.slot"),
    ("slot Production", with_("target.slot", "Production"), 400, "target.slot"),
    ("slot a number", with_("target.slot", 1), 400, "target.slot"),
    ("unknown target field", with_("target.region", "west"), 400, "target.region"),
    ("no version", without("version"), 400, "version"),
    ("version empty", with_("version", ""), 400, "version"),
    ("version control chars", with_("version", "1.0\x07"), 400, "version"),
    ("version too long", with_("version", "1" * 200), 400, "version"),
    ("version a number", with_("version", 1.5), 400, "version"),
    ("no artifact", without("artifact"), 400, "artifact"),
    ("artifact empty", with_("artifact", {}), 400, "artifact"),
    ("artifact two kinds", with_("artifact", {"container": "a/b:1", "package": "https://x/p.zip"}), 400, "artifact"),
    ("image with space", with_("artifact", {"container": "contoso.azurecr.io/web 1"}), 400, "artifact.container"),
    ("image with newline", with_("artifact", {"container": "contoso.azurecr.io/web:1\n"}), 400, "artifact.container"),
    (
        "package over http",
        with_("artifact", {"package": "http://x.blob.core.windows.net/p.zip"}),
        400,
        "artifact.package",
    ),
    ("package javascript", with_("artifact", {"package": "javascript:alert(1)"}), 400, "artifact.package"),
    (
        "package with credentials",
        with_("artifact", {"package": "https://u:p@x.blob.core.windows.net/p.zip"}),
        403,
        "artifact.package",
    ),
    (
        "package with a SAS",
        with_("artifact", {"package": "https://x.blob.core.windows.net/p.zip?sig=abc"}),
        403,
        "artifact.package",
    ),
    ("image from another registry", with_("artifact", {"container": "evil.example/web:1"}), 403, "artifact.container"),
    ("settings a list", with_("appSettings", ["A"]), 400, "appSettings"),
    ("setting value a number", with_("appSettings", {"A": 1}), 400, "appSettings.A"),
    ("setting value null", with_("appSettings", {"A": None}), 400, "appSettings.A"),
    ("setting name with space", with_("appSettings", {"A B": "x"}), 400, "appSettings.A B"),
    ("setting name newline", with_("appSettings", {"A\n": "x"}), 400, "appSettings"),
    ("setting value too long", with_("appSettings", {"A": "x" * 5000}), 400, "appSettings.A"),
    ("101 settings", with_("appSettings", {f"K{i}": "v" for i in range(101)}), 400, "appSettings"),
    ("reserved RELEASE_ID", with_("appSettings", {"RELEASE_ID": "x"}), 400, "appSettings.RELEASE_ID"),
    (
        "reserved package setting",
        with_("appSettings", {"WEBSITE_RUN_FROM_PACKAGE": "x"}),
        400,
        "appSettings.WEBSITE_RUN_FROM_PACKAGE",
    ),
    ("platform setting", with_("appSettings", {"WEBSITE_TIME_ZONE": "x"}), 403, "appSettings.WEBSITE_TIME_ZONE"),
    ("registry password", with_("appSettings", {"DOCKER_REGISTRY_SERVER_PASSWORD": "x"}), 403, "appSettings"),
    ("NODE_OPTIONS", with_("appSettings", {"NODE_OPTIONS": "--require /tmp/x"}), 403, "appSettings.NODE_OPTIONS"),
    ("LD_PRELOAD", with_("appSettings", {"LD_PRELOAD": "/tmp/x.so"}), 403, "appSettings.LD_PRELOAD"),
    ("no strategy", without("strategy"), 400, "strategy"),
    ("strategy unknown", with_("strategy", {"type": "bigBang"}), 400, "strategy.type"),
    ("canary without steps", with_("strategy", {"type": "canary"}), 400, "strategy.steps"),
    (
        "blue-green with steps",
        with_("strategy", {"type": "blueGreen", "steps": [{"weight": 10, "bake": 1}]}),
        400,
        "strategy.steps",
    ),
    (
        "steps not rising",
        with_("strategy.steps", [{"weight": 50, "bake": 1}, {"weight": 10, "bake": 1}]),
        400,
        "strategy.steps[1].weight",
    ),
    ("weight 0", with_("strategy.steps", [{"weight": 0, "bake": 1}]), 400, "strategy.steps[0].weight"),
    ("weight 100", with_("strategy.steps", [{"weight": 100, "bake": 1}]), 400, "strategy.steps[0].weight"),
    ("weight a string", with_("strategy.steps", [{"weight": "10", "bake": 1}]), 400, "strategy.steps[0].weight"),
    ("weight true", with_("strategy.steps", [{"weight": True, "bake": 1}]), 400, "strategy.steps[0].weight"),
    ("bake negative", with_("strategy.steps", [{"weight": 10, "bake": "-1m"}]), 400, "strategy.steps[0].bake"),
    ("bake a year", with_("strategy.steps", [{"weight": 10, "bake": "8760h"}]), 400, "strategy.steps[0].bake"),
    ("bake huge number", with_("strategy.steps", [{"weight": 10, "bake": 10**12}]), 400, "strategy.steps[0].bake"),
    ("bake words", with_("strategy.steps", [{"weight": 10, "bake": "soon"}]), 400, "strategy.steps[0].bake"),
    ("21 steps", with_("strategy.steps", [{"weight": i + 1, "bake": 1} for i in range(21)]), 400, "strategy.steps"),
    ("step extra field", with_("strategy.steps", [{"weight": 10, "bake": 1, "x": 1}]), 400, "strategy.steps[0].x"),
    ("guard negative", with_("strategy.guard", -5), 400, "strategy.guard"),
    ("promotion sometimes", with_("promotion", "sometimes"), 400, "promotion"),
    ("approveBeforeTraffic a string", with_("approveBeforeTraffic", "yes"), 400, "approveBeforeTraffic"),
    (
        "check path to another host",
        with_("validation.checks", [{"path": "//evil.example/x"}]),
        400,
        "validation.checks[0].path",
    ),
    (
        "check path a URL",
        with_("validation.checks", [{"path": "https://evil.example/"}]),
        400,
        "validation.checks[0].path",
    ),
    ("check path backslash", with_("validation.checks", [{"path": "/\\evil"}]), 400, "validation.checks[0].path"),
    (
        "check status 600",
        with_("validation.checks", [{"path": "/", "expectStatus": 600}]),
        400,
        "validation.checks[0].expectStatus",
    ),
    ("check timeout 0", with_("validation.checks", [{"path": "/", "timeout": 0}]), 400, "validation.checks[0].timeout"),
    ("no checks", with_("validation.checks", []), 400, "validation.checks"),
    ("failure limit 0", with_("validation.failureLimit", 0), 400, "validation.failureLimit"),
    ("provider unknown", with_("analysis", {"providers": [{"type": "prometheus"}]}), 400, "analysis.providers[0].type"),
    (
        "webhook with a URL",
        with_("analysis", {"providers": [{"type": "webhook", "url": "https://x"}]}),
        400,
        "analysis.providers[0]",
    ),
    (
        "webhook naming a key",
        with_("analysis", {"providers": [{"type": "webhook", "gate": "g", "secretSetting": "WEBHOOK_SECRET_X"}]}),
        400,
        "analysis.providers[0].secretSetting",
    ),
    (
        "webhook gate unknown",
        with_("analysis", {"providers": [{"type": "webhook", "gate": "metadata"}]}),
        403,
        "analysis.providers[0].gate",
    ),
    (
        "webhook gate bad name",
        with_("analysis", {"providers": [{"type": "webhook", "gate": "../x"}]}),
        400,
        "analysis.providers[0].gate",
    ),
    (
        "http provider to another host",
        with_("analysis", {"providers": [{"type": "http", "path": "//x"}]}),
        400,
        "analysis.providers[0].path",
    ),
    (
        "requestsPerTick huge",
        with_("analysis", {"providers": [{"type": "http", "requestsPerTick": 100000}]}),
        400,
        "analysis.providers[0].requestsPerTick",
    ),
    ("error rate 5", with_("analysis.maxErrorRate", 5), 400, "analysis.maxErrorRate"),
    ("minRequests 0", with_("analysis.minRequests", 0), 400, "analysis.minRequests"),
    ("progress deadline 1s", with_("analysis.progressDeadline", "1s"), 400, "analysis.progressDeadline"),
    ("unknown analysis field", with_("analysis.strict", True), 400, "analysis.strict"),
    ("metadata unknown", with_("metadata.who", "x"), 400, "metadata.who"),
    ("pipeline URL javascript", with_("metadata.pipelineUrl", "javascript:x"), 400, "metadata.pipelineUrl"),
    ("commit control chars", with_("metadata.commit", "abc\x1b[31m"), 400, "metadata.commit"),
]


def event_body(mutate: Callable[[dict[str, Any]], Any]) -> bytes:
    value = mutate(CANARY_EVENT)
    return value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def assert_problem(response, doc, status: int, field: str) -> None:
    assert response.status_code == status, (response.status_code, doc)
    assert response.mimetype == "application/problem+json"
    text = response.get_body().decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text
    if field:
        fields = " ".join(e["field"] for e in doc.get("errors", []))
        assert field in fields, (field, doc.get("errors"))


def assert_nothing_stored(app) -> None:
    assert app.service.list().items == []
    assert app.platform.calls == []


@pytest.mark.parametrize(("mutate", "status", "field"), [c[1:] for c in EVENTS], ids=[c[0] for c in EVENTS])
def test_a_bad_event_over_http_is_a_problem_naming_the_field(indexed, app, mutate, status, field):
    raw_event = event_body(mutate)
    headers = {"X-Release-Signature-256": sign(raw_event, TEST_KEY), "X-Release-Key-Id": TEST_KEY_ID}
    response, doc = submit(indexed, raw=raw_event, headers=headers)
    assert_problem(response, doc, status, field)
    assert_nothing_stored(app)


@pytest.mark.parametrize(("mutate", "status", "field"), [c[1:] for c in EVENTS], ids=[c[0] for c in EVENTS])
def test_a_bad_event_on_service_bus_is_stored_as_rejected_and_completes(
    indexed, app, table_store, mutate, status, field
):
    raw_event = event_body(mutate)
    assert indexed["release_events"].get_user_function()(sb_message(raw_event, "bad-event")) is None
    (row,) = table_store.list_rejected(app.clock.now().strftime("%Y-%m-%d"))
    assert row["reason"] and row["messageId"] == "bad-event"
    if field:
        # On Service Bus the whole message is "the event"; over HTTP it is "the body".
        field = "(event)" if field == "(body)" else field
        assert field in json.dumps(row["errors"], ensure_ascii=False) or field in row["reason"]
    assert_nothing_stored(app)


# -- Service Bus messages themselves ----------------------------------------------------------------


MESSAGES = [
    (
        "no message id and no releaseId",
        lambda: sb_message({k: v for k, v in CANARY_EVENT.items() if k != "releaseId"}, None),
    ),
    ("signature an integer", lambda: _with_properties({"releaseSignature": 12345, "releaseKeyId": TEST_KEY_ID})),
    ("signature bytes", lambda: _with_properties({"releaseSignature": b"\xff\xfe", "releaseKeyId": TEST_KEY_ID})),
    ("key id only", lambda: _with_properties({"releaseKeyId": TEST_KEY_ID})),
    ("signature only", lambda: _with_properties({"releaseSignature": sign(body(CANARY_EVENT), TEST_KEY)})),
    ("huge signature", lambda: _with_properties({"releaseSignature": "x" * 100000, "releaseKeyId": TEST_KEY_ID})),
    ("token garbage", lambda: _with_properties({"releaseIdentityToken": "not-a-token"})),
    ("token huge", lambda: _with_properties({"releaseIdentityToken": "a." * 20000})),
    (
        "unknown key id",
        lambda: _with_properties({"releaseSignature": sign(body(CANARY_EVENT), TEST_KEY), "releaseKeyId": "other"}),
    ),
    (
        "signed over other bytes",
        lambda: _with_properties({"releaseSignature": sign(b"{}", TEST_KEY), "releaseKeyId": TEST_KEY_ID}),
    ),
    ("huge message id", lambda: sb_message(CANARY_EVENT, "m" * 5000, signed_with=None)),
]


def _with_properties(properties: dict[str, Any]):
    msg = sb_message(CANARY_EVENT, "m", signed_with=None)
    msg.application_properties.update(properties)  # type: ignore[union-attr]
    return msg


@pytest.mark.parametrize("make", [m[1] for m in MESSAGES], ids=[m[0] for m in MESSAGES])
def test_a_bad_service_bus_message_is_stored_as_rejected_never_raised(indexed, app, table_store, make):
    assert indexed["release_events"].get_user_function()(make()) is None
    (row,) = table_store.list_rejected(app.clock.now().strftime("%Y-%m-%d"))
    assert row["reason"]
    assert_nothing_stored(app)


# -- query parameters ------------------------------------------------------------------------------------

QUERIES = [
    ({"limit": "²"}, "limit"),
    ({"limit": "١٢"}, "limit"),
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "1e2"}, "limit"),
    ({"limit": " 5"}, "limit"),
    ({"limit": "5\n"}, "limit"),
    ({"limit": "9" * 5000}, "limit"),
    ({"phase": "sideways"}, "phase"),
    ({"phase": "shifting\n"}, "phase"),
    ({"phase": "x" * 10000}, "phase"),
    ({"site": "a/b"}, "site"),
    ({"site": "contoso-web\n"}, "site"),
    ({"site": "ｃontoso"}, "site"),
    ({"site": "a" * 100}, "site"),
    ({"subscriptionId": "x", "resourceGroup": "rg", "site": "s"}, "subscriptionId"),
    ({"subscriptionId": "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345"}, "subscriptionId"),
    ({"resourceGroup": "rg"}, "subscriptionId"),
    ({"subscriptionId": "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345", "resourceGroup": "rg/x", "site": "s"}, "resourceGroup"),
    ({"cursor": "!!!"}, "cursor"),
    ({"cursor": "é"}, "cursor"),
    ({"cursor": "A" * 3000}, "cursor"),
    ({"cursor": "eyJub3QiOiAiYSBjdXJzb3IifQ"}, "cursor"),
    ({"cursor": "bm90IGpzb24"}, "cursor"),
    ({"unknown": "1"}, "unknown"),
    ({"limit": "1", "LIMIT": "2"}, "LIMIT"),
    ({"x" * 300: "1"}, "x"),
]


@pytest.mark.parametrize(("params", "field"), QUERIES, ids=[f"query-{i}" for i in range(len(QUERIES))])
def test_a_bad_query_is_a_problem_naming_the_parameter(indexed, app, params, field):
    response, doc = http(indexed, "list_releases", params=params, who="rita")
    assert_problem(response, doc, 400, field)


REJECTION_QUERIES = [
    ({"day": "2026-13-01"}, "day"),
    ({"day": "2026-02-30"}, "day"),
    ({"day": "26-11-27"}, "day"),
    ({"day": "２０２６-11-27"}, "day"),
    ({"day": "2026-11-27\n"}, "day"),
    ({"day": "2026-11-27' or 1 eq 1"}, "day"),
    ({"limit": "0"}, "limit"),
    ({"limit": "٣"}, "limit"),
    ({"since": "yesterday"}, "since"),
]


@pytest.mark.parametrize(
    ("params", "field"), REJECTION_QUERIES, ids=[f"rejections-{i}" for i in range(len(REJECTION_QUERIES))]
)
def test_a_bad_rejections_query_is_a_problem_naming_the_parameter(indexed, app, params, field):
    response, doc = http(indexed, "list_rejections", path="/api/rejections", params=params, who="rita")
    assert_problem(response, doc, 400, field)


# -- route parameters ---------------------------------------------------------------------------------------

RELEASE_IDS = ["web-1\n", "../../etc/passwd", "x" * 300, "a%00b", "wéb", "", "a b", "<script>"]


@pytest.mark.parametrize("release_id", RELEASE_IDS)
@pytest.mark.parametrize("name", ["get_release", "get_release_audit"])
def test_a_bad_release_id_in_a_route_is_a_404_problem(indexed, app, release_id, name):
    response, doc = http(indexed, name, path="/api/releases/x", route={"releaseId": release_id}, who="rita")
    assert_problem(response, doc, 404, "")


@pytest.mark.parametrize(
    "action", ["explode", "APPROVE", "approve\n", "release_site", "", "x" * 500, "retry/../approve"]
)
def test_an_unknown_action_is_a_404_problem(indexed, app, action):
    response, doc = override(indexed, "web-1", action)
    assert_problem(response, doc, 404, "")


# -- override bodies -----------------------------------------------------------------------------------------

OVERRIDES = [
    (b"", "reason"),
    (b"not json", "(body)"),
    (b"[]", "(body)"),
    (b'"why"', "(body)"),
    (b'{"reason": 1}', "reason"),
    (b'{"reason": ""}', "reason"),
    (b'{"reason": "   "}', "reason"),
    (b'{"reason": "' + b"x" * 1001 + b'"}', "reason"),
    (b'{"reason": "two\\nlines"}', "reason"),
    (b'{"reason": "bell\\u0007"}', "reason"),
    (b'{"reason": "x", "extra": 1}', "extra"),
    (b'{"reason": "a", "reason": "b"}', "reason"),
    (b'{"reason": "\\ud800"}', "reason"),
    (b'{"reason": NaN}', "(body)"),
    (b'{"reason": "x"' + b" " * 9000 + b"}", "(body)"),
    (b'{"reason": ' + b"[" * 5000 + b"}", "(body)"),
    (b'{"reason": "\xff"}', "(body)"),
    (b'{"reason": ' + b"1" * 5000 + b"}", "(body)"),
]


@pytest.mark.parametrize(("data", "field"), OVERRIDES, ids=[f"override-{i}" for i in range(len(OVERRIDES))])
def test_a_bad_override_body_is_a_problem_naming_the_field(indexed, app, data, field):
    submit(indexed)
    response, doc = http(
        indexed,
        "override_release",
        "POST",
        f"/api/releases/{RID}/pause",
        raw=data,
        route={"releaseId": RID, "action": "pause"},
    )
    assert_problem(response, doc, 400, field)
    assert not app.service.get(RID).paused


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_a_body_that_does_not_say_it_is_json_is_415(indexed, app, content_type):
    submit(indexed)
    response, doc = http(
        indexed,
        "override_release",
        "POST",
        f"/api/releases/{RID}/pause",
        payload={"reason": "x"},
        route={"releaseId": RID, "action": "pause"},
        headers={"Content-Type": content_type},
    )
    assert_problem(response, doc, 415, "Content-Type")
    response, doc = submit(indexed, headers={"Content-Type": content_type})
    assert_problem(response, doc, 415, "Content-Type")


# -- signatures and principals ---------------------------------------------------------------------------------

SIGNATURES = [
    ({"X-Release-Signature-256": "sha256=abc"}, 401, "signature"),
    ({"X-Release-Key-Id": TEST_KEY_ID}, 401, "signature"),
    ({"X-Release-Signature-256": "garbage", "X-Release-Key-Id": TEST_KEY_ID}, 401, "signature"),
    ({"X-Release-Signature-256": "sha256=00", "X-Release-Key-Id": "nobody"}, 401, "key id"),
    ({"X-Release-Identity-Token": "not.a.token"}, 401, "identity token"),
    ({"X-Release-Key-Id": "é"}, 400, "x-release-key-id"),
    ({"X-Release-Signature-256": "s" * 20000}, 400, "x-release-signature-256"),
]


@pytest.mark.parametrize(
    ("headers", "status", "field"), SIGNATURES, ids=[f"signature-{i}" for i in range(len(SIGNATURES))]
)
def test_a_bad_signature_header_is_a_problem_naming_it(indexed, app, headers, status, field):
    response, doc = submit(indexed, headers=headers)
    assert_problem(response, doc, status, field)
    assert_nothing_stored(app)


PRINCIPALS = [
    "not-base64!",
    "e30",  # "{}" without padding
    "W10=",  # "[]"
    principal("no-roles", []).replace("oid-no-roles", ""),
    "A" * 20000,
]


@pytest.mark.parametrize("header", PRINCIPALS, ids=[f"principal-{i}" for i in range(len(PRINCIPALS))])
def test_a_malformed_principal_is_a_problem_never_an_identity(indexed, app, header):
    response, doc = http(indexed, "list_releases", headers={"X-MS-CLIENT-PRINCIPAL": header}, who=None)
    assert response.status_code in (400, 403)
    assert_problem(response, doc, response.status_code, "")


def test_the_corpus_is_at_least_150_cases():
    cases = (
        2 * len(EVENTS)
        + len(MESSAGES)
        + len(QUERIES)
        + len(REJECTION_QUERIES)
        + 2 * len(RELEASE_IDS)
        + 7
        + len(OVERRIDES)
        + 4
    )
    cases += len(SIGNATURES) + len(PRINCIPALS)
    assert cases >= 150, cases
