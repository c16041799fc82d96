"""The release event contract v1: what it accepts, what it refuses, and how it says so."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shared.domain.model import Promotion, ProviderKind, StrategyKind
from shared.domain.schema import (
    EVENT_SCHEMA,
    MAX_EVENT_BYTES,
    SchemaError,
    exported_schema,
    parse_release_event,
    spec_fingerprint,
    spec_from_document,
    spec_to_document,
)
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, SUBSCRIPTION, body, event

ROOT = Path(__file__).resolve().parents[2]


def errors_of(doc, **kw) -> dict[str, str]:
    with pytest.raises(SchemaError) as caught:
        parse_release_event(body(doc) if isinstance(doc, dict) else doc, **kw)
    return dict(caught.value.errors)


def test_a_complete_canary_event_becomes_a_spec_with_every_field():
    spec = parse_release_event(body(CANARY_EVENT))
    assert spec.release_id == "web-1.4.2"
    assert spec.target.site == "contoso-web" and spec.target.slot == "staging"
    assert spec.strategy.kind is StrategyKind.CANARY
    assert [(s.weight, s.bake_seconds) for s in spec.strategy.steps] == [(10, 300), (50, 600)]
    assert spec.artifact.kind == "container"
    assert spec.app_settings == {"FEATURE_CHECKOUT_V2": "on"}
    assert spec.validation.checks[0].path == "/healthz"
    assert spec.validation.consecutive_successes == 2
    assert spec.metadata.requested_by == "alice@contoso.com"
    assert spec.promotion is Promotion.AUTO


def test_a_blue_green_event_with_a_package_needs_no_steps():
    spec = parse_release_event(body(BLUE_GREEN_EVENT))
    assert spec.strategy.kind is StrategyKind.BLUE_GREEN
    assert spec.strategy.steps == ()
    assert spec.strategy.guard_seconds == 600
    assert spec.artifact.kind == "package"
    assert spec.target.slot == "green"


def test_the_release_id_defaults_to_the_message_id():
    spec = parse_release_event(body(event(releaseId=None)), default_release_id="msg-42")
    assert spec.release_id == "msg-42"


def test_defaults_are_filled_in_for_validation_and_analysis():
    spec = parse_release_event(body(event(validation=None)))
    assert spec.validation.checks[0].path == "/"
    assert spec.validation.checks[0].expect_status == 200
    assert spec.analysis.providers[0].kind is ProviderKind.HTTP
    assert spec.analysis.min_requests == 50


@pytest.mark.parametrize(
    ("description", "doc", "field", "message_part"),
    [
        ("a missing target is named", event(target=None), "target", "required"),
        (
            "a missing site inside target is named with its path",
            event(target={"subscriptionId": CANARY_EVENT["target"]["subscriptionId"], "resourceGroup": "rg"}),
            "target.site",
            "required",
        ),
        ("an unknown top-level field is refused", event(colour="blue"), "colour", "not a known field"),
        (
            "a subscription id that is not a GUID is refused",
            event(target={**CANARY_EVENT["target"], "subscriptionId": "nope"}),
            "target.subscriptionId",
            "must match",
        ),
        (
            "the production slot cannot be the staging slot",
            event(target={**CANARY_EVENT["target"], "slot": "production"}),
            "target.slot",
            "not production",
        ),
        (
            "a weight of 100 is refused: promotion is the swap",
            event(strategy={"type": "canary", "steps": [{"weight": 100, "bake": "1m"}]}),
            "strategy.steps[0].weight",
            "less than 100",
        ),
        (
            "weights must rise",
            event(strategy={"type": "canary", "steps": [{"weight": 20, "bake": "1m"}, {"weight": 10, "bake": "1m"}]}),
            "strategy.steps[1].weight",
            "greater than the previous",
        ),
        ("a canary needs steps", event(strategy={"type": "canary"}), "strategy.steps", "required"),
        (
            "blue-green takes no steps",
            event(strategy={"type": "blueGreen", "steps": [{"weight": 10, "bake": 0}]}),
            "strategy.steps",
            "only for a canary",
        ),
        (
            "a bad duration is explained",
            event(strategy={"type": "canary", "steps": [{"weight": 10, "bake": "five minutes"}]}),
            "strategy.steps[0].bake",
            "'90s'",
        ),
        (
            "a duration over its limit is refused",
            event(strategy={"type": "canary", "steps": [{"weight": 10, "bake": "25h"}]}),
            "strategy.steps[0].bake",
            "at most 86400s",
        ),
        (
            "an artifact must be exactly one kind",
            event(artifact={"container": "a/b:1", "package": "https://x/y.zip"}),
            "artifact",
            "exactly one",
        ),
        ("an empty artifact is refused", event(artifact={}), "artifact", "one of"),
        (
            "a package must be an https URL",
            event(artifact={"package": "http://x/y.zip"}),
            "artifact.package",
            "must match",
        ),
        (
            "the controller's own settings are reserved",
            event(appSettings={"RELEASE_ID": "x"}),
            "appSettings.RELEASE_ID",
            "reserved",
        ),
        (
            "an app setting name must be valid",
            event(appSettings={"bad name": "x"}),
            "appSettings.bad name",
            "not a valid name",
        ),
        (
            "a boolean is not a number",
            event(strategy={"type": "canary", "steps": [{"weight": True, "bake": 1}]}),
            "strategy.steps[0].weight",
            "a number",
        ),
        ("promotion takes auto or manual", event(promotion="sometimes"), "promotion", "one of"),
        (
            "a field that does not apply to a provider is named",
            event(analysis={"providers": [{"type": "azureMonitor", "path": "/"}]}),
            "analysis.providers[0].path",
            "does not apply",
        ),
        (
            "an event names a webhook gate; it cannot point one at a URL or a key",
            event(analysis={"providers": [{"type": "webhook", "url": "https://169.254.169.254/", "gate": "g"}]}),
            "analysis.providers[0].url",
            "is not a known field",
        ),
        (
            "a webhook gate needs a name",
            event(analysis={"providers": [{"type": "webhook"}]}),
            "analysis.providers[0].gate",
            "is required",
        ),
        (
            "a check path is a path on the slot, never another host",
            event(validation={"checks": [{"path": "//evil.example/x"}]}),
            "validation.checks[0].path",
            "must match",
        ),
        (
            "a name ending in a newline is not a name",
            event(target={"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg", "site": "s", "slot": "production\n"}),
            "target.slot",
            "must match",
        ),
        ("an error rate is a fraction", event(analysis={"maxErrorRate": 5}), "analysis.maxErrorRate", "at most 1"),
        ("a release id must be table-safe", event(releaseId="a/b"), "releaseId", "must match"),
        ("schemaVersion must be 1", event(schemaVersion=2), "schemaVersion", "must be 1"),
    ],
)
def test_invalid_events_are_refused_with_the_field_named(description, doc, field, message_part):
    errors = errors_of(doc)
    assert field in errors, f"{description}: got {errors}"
    assert message_part in errors[field], f"{description}: got {errors[field]!r}"


def test_every_error_is_reported_at_once():
    errors = errors_of(event(version=None, promotion="x", colour=1))
    assert {"version", "promotion", "colour"} <= set(errors)


def test_without_a_release_id_or_a_message_id_the_release_id_is_required():
    assert "releaseId" in errors_of(event(releaseId=None))


def test_a_message_id_that_is_not_a_valid_release_id_is_explained():
    errors = errors_of(event(releaseId=None), default_release_id="has spaces")
    assert "message id" in errors["releaseId"]


@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        (b"", "empty"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"version": "1", "version": "2"}', "appears twice"),
        (b'{"a": NaN}', "NaN"),
        (b"[1, 2]", "an object"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused_with_a_reason(raw, message_part):
    with pytest.raises(SchemaError) as caught:
        parse_release_event(raw)
    assert message_part in str(caught.value)


def test_an_event_over_the_size_limit_is_refused_before_parsing():
    huge = event(appSettings={"BIG": "x" * 4000})
    raw = body(huge) + b" " * MAX_EVENT_BYTES
    with pytest.raises(SchemaError) as caught:
        parse_release_event(raw)
    assert "limit" in str(caught.value)


def test_the_canonical_document_reads_back_to_the_same_spec():
    for doc in (CANARY_EVENT, BLUE_GREEN_EVENT):
        spec = parse_release_event(body(doc))
        assert spec_from_document(spec_to_document(spec)) == spec


def test_spelling_out_the_defaults_does_not_change_the_fingerprint():
    terse = parse_release_event(body(event(validation=None)))
    explicit = parse_release_event(
        body(event(validation={"checks": [{"path": "/", "expectStatus": 200, "timeout": "5s"}]}, promotion="auto"))
    )
    assert spec_fingerprint(terse) == spec_fingerprint(explicit)
    changed = parse_release_event(body(event(version="1.4.3")))
    assert spec_fingerprint(changed) != spec_fingerprint(terse)


def test_the_published_schema_file_is_current():
    schema = exported_schema()
    published = (ROOT / schema.path).read_text(encoding="utf-8")
    assert published == schema.text, "run `python -m shared.domain.schema` and commit the file"


def test_the_published_schema_is_valid_json_schema_2020_12():
    jsonschema.Draft202012Validator.check_schema(json.loads(exported_schema().text))


SAMPLES = [
    CANARY_EVENT,
    BLUE_GREEN_EVENT,
    event(strategy={"type": "canary"}),
    event(strategy={"type": "blueGreen", "steps": [{"weight": 5, "bake": 1}]}),
    event(colour="x"),
    event(artifact={}),
    event(artifact={"container": "a:1", "package": "https://x"}),
    event(appSettings={"1bad": "x"}),
    event(strategy={"type": "canary", "steps": [{"weight": 0, "bake": 1}]}),
    event(validation={"checks": []}),
    event(analysis={"providers": [{"type": "http", "requestsPerTick": 0}]}),
    event(target={**CANARY_EVENT["target"], "site": "-bad"}),
    event(schemaVersion=1),
]


@pytest.mark.parametrize("doc", SAMPLES)
def test_a_standard_json_schema_validator_agrees_with_the_controller(doc):
    """Producers can validate with any JSON Schema tool and get the same answer (for schema rules)."""
    standard = jsonschema.Draft202012Validator(EVENT_SCHEMA)
    standard_ok = standard.is_valid(doc)
    try:
        spec_from_document(doc)
        ours_ok = True
    except SchemaError:
        ours_ok = False
    assert standard_ok == ours_ok


def test_strict_json_allows_32_levels_of_nesting_and_names_the_33rd():
    from shared.domain.schema import strict_json

    def nested(levels: int) -> bytes:
        return b'{"a":' * (levels - 1) + b"[1]" + b"}" * (levels - 1)

    assert strict_json(nested(32), max_bytes=10_000, what="the body") is not None
    with pytest.raises(SchemaError, match="the body nests deeper than 32 levels"):
        strict_json(nested(33), max_bytes=10_000, what="the body")
    with pytest.raises(SchemaError, match="nests deeper than 32 levels"):
        strict_json(b"[" * 5000 + b"]" * 5000, max_bytes=100_000, what="the body")


def test_strict_json_names_where_a_lone_surrogate_is():
    from shared.domain.schema import strict_json

    with pytest.raises(SchemaError) as caught:
        strict_json(b'{"a": [1, {"b": "ok", "c": "\\udc00"}]}', max_bytes=10_000, what="the body")
    assert caught.value.errors[0][0] == "a[1].c"
    with pytest.raises(SchemaError) as caught:
        strict_json(b'{"a": {"\\ud800": 1}}', max_bytes=10_000, what="the body")
    assert caught.value.errors[0][0] == "a.(name)"
