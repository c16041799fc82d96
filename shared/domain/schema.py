"""The release event contract, version 1.

One source of truth: ``EVENT_SCHEMA`` is the JSON Schema published in ``schemas/`` and is also what
``parse_release_event`` enforces (a small interpreter of the keywords it uses), followed by the
rules a schema cannot say well (steps must rise, reserved settings). Every error names its field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from shared.domain.durations import DURATION_PATTERN, parse_duration
from shared.domain.model import (
    AnalysisSettings,
    Artifact,
    Check,
    Metadata,
    Promotion,
    ProviderKind,
    ProviderSpec,
    ReleaseSpec,
    Step,
    Strategy,
    StrategyKind,
    Target,
    Validation,
    WebhookStage,
)

SCHEMA_ID = "https://release-controller.example/schemas/release-event.v1.json"
MAX_EVENT_BYTES = 64 * 1024
RELEASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SUBSCRIPTION_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
RESOURCE_GROUP_PATTERN = r"^[A-Za-z0-9_().-]{0,89}[A-Za-z0-9_()-]$"
SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,58}[A-Za-z0-9]$"
SLOT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,58}$"
APP_SETTING_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$"
GATE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# An absolute path on the slot's own host: "/x", never "//elsewhere" (a host of someone else's).
ABSOLUTE_PATH = r"^/(?![/\\])[^\s\\]*$"
# Settings the controller writes itself on the slot; a release may not set them.
RESERVED_APP_SETTINGS = frozenset(
    {"RELEASE_ID", "RELEASE_VERSION", "RELEASE_OWNED_SETTINGS", "WEBSITE_RUN_FROM_PACKAGE"}
)
DAY = 86400


class SchemaError(ValueError):
    """The event is not a valid release event v1. ``errors`` lists (field, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{f or '(body)'}: {m}" for f, m in errors))


def _duration(description: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "description": description + " Integer seconds or a string like '90s', '5m', '1h30m'.",
        "type": ["integer", "string"],
        "pattern": DURATION_PATTERN,
        "minimum": minimum,
        "maximum": maximum,
        "x-durationSeconds": {"minimum": minimum, "maximum": maximum},
    }


def _text(description: str, max_length: int, pattern: str = r"^[^\x00-\x1f]*$") -> dict[str, Any]:
    return {
        "description": description,
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": pattern,
    }


_STEP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["weight", "bake"],
    "properties": {
        "weight": {
            "description": "Percent of production traffic routed to the new version in this step.",
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 100,
        },
        "bake": _duration("How long the step runs under analysis before the next.", 0, DAY),
    },
}

_CHECK = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": _text("Path requested on the staging slot's own host name.", 1024, ABSOLUTE_PATH),
        "expectStatus": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
        "bodyContains": _text("Text the response body must contain.", 1024, r"^[\s\S]*$"),
        "timeout": _duration("Per-request timeout.", 1, 120),
    },
}

_PROVIDER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {"enum": [k.value for k in ProviderKind]},
        "path": _text("http: path probed on both versions.", 1024, ABSOLUTE_PATH),
        "requestsPerTick": {"type": "integer", "minimum": 1, "maximum": 500},
        "gate": _text(
            "webhook: the name of a gate in the platform team's release policy (its URL and key are there).",
            63,
            GATE_NAME_PATTERN,
        ),
        "stages": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": [s.value for s in WebhookStage]},
        },
        "timeout": _duration("webhook: how long to wait for the gate's answer.", 1, 120),
    },
}

EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "Release event v1",
    "description": "Asks the release controller to roll a new version out to an App Service site.",
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "version", "artifact", "strategy"],
    "properties": {
        "schemaVersion": {"const": 1},
        "releaseId": {
            "description": "Unique id of this release. Default: the Service Bus message id.",
            "type": "string",
            "pattern": RELEASE_ID_PATTERN,
        },
        "target": {
            "type": "object",
            "additionalProperties": False,
            "required": ["subscriptionId", "resourceGroup", "site"],
            "properties": {
                "subscriptionId": {"type": "string", "pattern": SUBSCRIPTION_PATTERN},
                "resourceGroup": {"type": "string", "pattern": RESOURCE_GROUP_PATTERN},
                "site": {"type": "string", "pattern": SITE_PATTERN},
                "slot": {
                    "description": "The deployment slot the new version is staged in.",
                    "type": "string",
                    "pattern": SLOT_PATTERN,
                    "default": "staging",
                },
            },
        },
        "version": _text("The version being released, as people call it.", 128),
        "artifact": {
            "description": "Exactly one of: a container image, or a package URL (run from package).",
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "container": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}$"},
                "package": {"type": "string", "pattern": r"^https://[^\s]{1,2040}$"},
            },
        },
        "appSettings": {
            "description": "App settings laid over the slot's current settings for this release.",
            "type": "object",
            "maxProperties": 100,
            "propertyNames": {"pattern": APP_SETTING_NAME_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": 4096},
        },
        "strategy": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {"enum": [k.value for k in StrategyKind]},
                "steps": {
                    "description": "canary: ordered steps with rising weights, all below 100.",
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 20,
                    "items": _STEP,
                },
                "guard": _duration("After the swap, how long production is watched with the old version warm.", 0, DAY),
            },
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": "canary"}}},
                    "then": {"required": ["steps"]},
                },
                {
                    "if": {"properties": {"type": {"const": "blueGreen"}}},
                    "then": {"not": {"required": ["steps"]}},
                },
            ],
        },
        "promotion": {
            "description": "manual: wait for approval before the swap.",
            "enum": [p.value for p in Promotion],
            "default": "auto",
        },
        "approveBeforeTraffic": {
            "description": "canary: wait for approval after validation, before any user traffic.",
            "type": "boolean",
            "default": False,
        },
        "validation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "checks": {"type": "array", "minItems": 1, "maxItems": 10, "items": _CHECK},
                "consecutiveSuccesses": {"type": "integer", "minimum": 1, "maximum": 20},
                "failureLimit": {"type": "integer", "minimum": 1, "maximum": 100},
                "deadline": _duration("Validation must pass within this time.", 10, DAY),
            },
        },
        "analysis": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "providers": {"type": "array", "minItems": 1, "maxItems": 5, "items": _PROVIDER},
                "maxErrorRate": {"type": "number", "minimum": 0, "maximum": 1},
                "maxLatencyMs": {"type": "number", "exclusiveMinimum": 0, "maximum": 600000},
                "relativeToStable": {"type": "boolean"},
                "maxErrorRateIncrease": {"type": "number", "minimum": 0, "maximum": 1},
                "maxLatencyIncreaseMs": {"type": "number", "minimum": 0, "maximum": 600000},
                "minRequests": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "maxBakeExtension": _duration("How long a step may wait for enough traffic.", 0, DAY),
                "failureLimit": {"type": "integer", "minimum": 0, "maximum": 100},
                "consecutiveSuccesses": {"type": "integer", "minimum": 1, "maximum": 100},
                "progressDeadline": _duration("A phase that makes no progress this long fails.", 60, DAY),
                "interval": _duration(
                    "How often the new version is measured while it bakes (and, when shorter than 15 s, "
                    "how often a platform operation under way is polled).",
                    1,
                    3600,
                ),
                "mode": {
                    "enum": ["enforce", "advisory"],
                    "description": "advisory: judge, but only record what would have been done (the release "
                    "policy must allow it).",
                },
            },
        },
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "commit": _text("Source commit.", 128),
                "pipelineUrl": _text("The CI run that asked for this release.", 2048, r"^https?://[^\s]+$"),
                "requestedBy": _text("Who asked for it.", 256),
            },
        },
    },
}


# ---------------------------------------------------------------------------------------------
# A small interpreter for the keywords EVENT_SCHEMA uses.
# ---------------------------------------------------------------------------------------------

_JSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_TYPE_WORDS = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
}


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _check(value: Any, schema: dict[str, Any], path: str, errors: list[tuple[str, str]]) -> None:
    if "const" in schema and value != schema["const"]:
        errors.append((path, f"must be {json.dumps(schema['const'])}"))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(e) for e in schema["enum"])
        errors.append((path, f"must be one of {allowed}"))
        return
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_JSON_TYPES[t](value) for t in types):
            errors.append((path, "must be " + " or ".join(_TYPE_WORDS[t] for t in types)))
            return
    if isinstance(value, str):
        _check_string(value, schema, path, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path, errors)
    elif isinstance(value, list):
        _check_array(value, schema, path, errors)
    elif isinstance(value, dict):
        _check_object(value, schema, path, errors)


@functools.cache
def _full(pattern: str) -> re.Pattern[str]:
    """A JSON Schema pattern as ECMA-262 reads it: ``$`` is the end of the text, never the point
    before a final newline (Python's ``$`` would let "production\n" match ``^[a-z]+$``)."""
    anchored = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    return re.compile(anchored)


def matches(pattern: str, value: str) -> bool:
    return _full(pattern).search(value) is not None


def _check_string(value: str, schema: dict[str, Any], path: str, errors: list[tuple[str, str]]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append((path, "must not be empty" if schema["minLength"] == 1 else "is too short"))
    elif "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append((path, f"must be at most {schema['maxLength']} characters"))
    elif "pattern" in schema and not matches(schema["pattern"], value):
        if "x-durationSeconds" in schema:
            errors.append((path, "must be a number of seconds or a string like '90s', '5m', '1h30m'"))
        else:
            errors.append((path, f"must match {schema['pattern']}"))
    elif "x-durationSeconds" in schema:
        _check_number(parse_duration(value), schema["x-durationSeconds"], path, errors, unit="s")


def _check_number(
    value: float, schema: dict[str, Any], path: str, errors: list[tuple[str, str]], unit: str = ""
) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        errors.append((path, f"must be at least {schema['minimum']}{unit}"))
    if "maximum" in schema and value > schema["maximum"]:
        errors.append((path, f"must be at most {schema['maximum']}{unit}"))
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append((path, f"must be greater than {schema['exclusiveMinimum']}{unit}"))
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append((path, f"must be less than {schema['exclusiveMaximum']}{unit}"))


def _check_array(value: list[Any], schema: dict[str, Any], path: str, errors: list[tuple[str, str]]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append((path, f"must have at least {schema['minItems']} item(s)"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append((path, f"must have at most {schema['maxItems']} items"))
        return
    if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        errors.append((path, "must not repeat an item"))
    if "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], _join(path, index), errors)


def _check_object(value: dict[str, Any], schema: dict[str, Any], path: str, errors: list[tuple[str, str]]) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            errors.append((_join(path, name), "is required"))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        names = ", ".join(properties) if properties else "a property"
        errors.append((path, f"must have one of: {names}"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        if schema["maxProperties"] == 1:
            errors.append((path, f"must have exactly one of: {', '.join(properties)}"))
        else:
            errors.append((path, f"must have at most {schema['maxProperties']} entries"))
        return
    names_schema = schema.get("propertyNames")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if names_schema and not matches(names_schema["pattern"], name):
            errors.append((_join(path, name), f"is not a valid name (must match {names_schema['pattern']})"))
        elif name in properties:
            _check(item, properties[name], _join(path, name), errors)
        elif extra is False:
            errors.append((_join(path, name), "is not a known field"))
        elif isinstance(extra, dict):
            _check(item, extra, _join(path, name), errors)
    # "allOf" with if/then holds cross-field rules; they are enforced by _semantic_errors.


def validate(document: Any, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Errors of ``document`` against ``schema`` (the keywords this module interprets)."""
    errors: list[tuple[str, str]] = []
    _check(document, schema, "", errors)
    return errors


def validate_document(document: Any) -> list[tuple[str, str]]:
    """Schema errors of ``document`` (empty when it conforms to EVENT_SCHEMA)."""
    return validate(document, EVENT_SCHEMA)


def _semantic_errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    target = doc["target"]
    if target.get("slot", "staging").lower() == "production":
        errors.append(("target.slot", "must name a deployment slot, not production"))
    strategy = doc["strategy"]
    steps = strategy.get("steps")
    if strategy["type"] == StrategyKind.CANARY and steps is None:
        errors.append(("strategy.steps", "is required for a canary"))
    if strategy["type"] == StrategyKind.BLUE_GREEN and steps is not None:
        errors.append(("strategy.steps", "is only for a canary; blueGreen swaps in one move"))
    for index in range(1, len(steps or [])):
        previous, current = steps[index - 1]["weight"], steps[index]["weight"]
        if current <= previous:
            errors.append(
                (f"strategy.steps[{index}].weight", f"must be greater than the previous step's weight ({previous})")
            )
    for name in doc.get("appSettings", {}):
        if name.upper() in RESERVED_APP_SETTINGS:
            errors.append((f"appSettings.{name}", "is reserved: the controller sets it on the slot"))
    if doc.get("approveBeforeTraffic") and strategy["type"] == StrategyKind.BLUE_GREEN:
        errors.append(("approveBeforeTraffic", "is only for a canary; use promotion 'manual' for blueGreen"))
    for index, provider in enumerate(doc.get("analysis", {}).get("providers", [])):
        where = f"analysis.providers[{index}]"
        kind = provider["type"]
        if kind == ProviderKind.WEBHOOK and "gate" not in provider:
            errors.append((f"{where}.gate", "is required for a webhook provider: name a gate of the release policy"))
        allowed = {
            ProviderKind.HTTP: {"type", "path", "requestsPerTick"},
            ProviderKind.AZURE_MONITOR: {"type"},
            ProviderKind.WEBHOOK: {"type", "gate", "stages", "timeout"},
        }[ProviderKind(kind)]
        for name in provider:
            if name not in allowed:
                errors.append((f"{where}.{name}", f"does not apply to the {kind} provider"))
    return errors


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SchemaError([(key, "appears twice in the same object")])
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise SchemaError([("", f"{name} is not valid JSON")])


MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 40


_SURROGATE = re.compile("[\ud800-\udfff]")


def _shape_error(document: Any, limit: int) -> tuple[str, str] | None:
    """(field, why) when the parsed document nests deeper than ``limit`` or holds a lone surrogate.
    Walked with an explicit stack: no recursion, one visit per value."""
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path, "holds a lone surrogate (\\ud800-\\udfff): not text"
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > limit:
            return "", f"nests deeper than {limit} levels"
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                stack.append((item, _join(path, key), depth + 1))
                stack.append((key, _join(path, "(name)"), depth))
        else:
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], _join(path, index), depth + 1))
    return None


def _json_number(text: str) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise SchemaError([("", f"a number has more than {MAX_NUMBER_CHARS} characters")])
    if text.lstrip("-").isdigit():
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise SchemaError([("", f"the number {text} is too large")])
    return value


def strict_json(body: bytes | str, *, max_bytes: int, what: str) -> Any:
    """Strict JSON, checked before and after parsing: size, UTF-8, nesting depth, number length, no
    duplicate keys, no NaN or Infinity, no lone surrogates. Raises SchemaError."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise SchemaError([("", f"{what} is {len(raw)} bytes; the limit is {max_bytes}")])
    if not raw.strip():
        raise SchemaError([("", f"{what} is empty")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError([("", f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        document = json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
            parse_int=_json_number,
            parse_float=_json_number,
        )
    except SchemaError:
        raise
    except json.JSONDecodeError as exc:
        raise SchemaError([("", f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]) from None
    except RecursionError:  # the C parser refuses to recurse further: far deeper than allowed
        raise SchemaError([("", f"{what} nests deeper than {MAX_JSON_DEPTH} levels")]) from None
    except ValueError:
        raise SchemaError([("", f"{what} is not JSON this controller reads")]) from None
    problem = _shape_error(document, MAX_JSON_DEPTH)
    if problem is not None:
        field, why = problem
        raise SchemaError([(field, f"{what} {why}" if not field else why)])
    return document


def load_json(body: bytes | str) -> Any:
    """The event's JSON, strictly (``strict_json``)."""
    return strict_json(body, max_bytes=MAX_EVENT_BYTES, what="the event")


def parse_release_event(body: bytes | str, *, default_release_id: str | None = None) -> ReleaseSpec:
    """The ReleaseSpec in ``body``. Raises SchemaError naming every field that is wrong."""
    document = load_json(body)
    return spec_from_document(document, default_release_id=default_release_id)


def spec_from_document(document: Any, *, default_release_id: str | None = None) -> ReleaseSpec:
    errors = validate_document(document)
    if errors:
        raise SchemaError(errors)
    errors = _semantic_errors(document)
    if "releaseId" not in document:
        if default_release_id is None:
            errors.append(("releaseId", "is required (there is no message id to default to)"))
        elif not matches(RELEASE_ID_PATTERN, default_release_id):
            errors.append(
                ("releaseId", f"is absent and the message id {default_release_id!r} is not a valid release id")
            )
    if errors:
        raise SchemaError(errors)
    return _build_spec(document, document.get("releaseId", default_release_id))


def _build_spec(doc: dict[str, Any], release_id: str) -> ReleaseSpec:
    target = doc["target"]
    artifact_kind, artifact_ref = next(iter(doc["artifact"].items()))
    strategy_doc = doc["strategy"]
    validation_doc = doc.get("validation", {})
    analysis_doc = doc.get("analysis", {})
    metadata_doc = doc.get("metadata", {})
    defaults_validation = Validation()
    defaults_analysis = AnalysisSettings()
    checks = tuple(
        Check(
            path=c.get("path", "/"),
            expect_status=c.get("expectStatus", 200),
            body_contains=c.get("bodyContains"),
            timeout_seconds=float(parse_duration(c.get("timeout", 5))),
        )
        for c in validation_doc.get("checks", [])
    )
    providers = tuple(
        ProviderSpec(
            kind=ProviderKind(p["type"]),
            path=p.get("path", "/"),
            requests_per_tick=p.get("requestsPerTick", 20),
            gate=p.get("gate"),
            stages=(
                tuple(WebhookStage(s) for s in p.get("stages", [WebhookStage.EACH_STEP.value]))
                if p["type"] == ProviderKind.WEBHOOK
                else ()
            ),
            timeout_seconds=float(parse_duration(p.get("timeout", 10))),
        )
        for p in analysis_doc.get("providers", [])
    )
    a = analysis_doc
    d = defaults_analysis
    return ReleaseSpec(
        release_id=release_id,
        target=Target(
            subscription_id=target["subscriptionId"],
            resource_group=target["resourceGroup"],
            site=target["site"],
            slot=target.get("slot", "staging"),
        ),
        version=doc["version"],
        artifact=Artifact(kind=artifact_kind, ref=artifact_ref),
        strategy=Strategy(
            kind=StrategyKind(strategy_doc["type"]),
            steps=tuple(
                Step(weight=float(s["weight"]), bake_seconds=parse_duration(s["bake"]))
                for s in strategy_doc.get("steps", [])
            ),
            guard_seconds=parse_duration(strategy_doc.get("guard", 0)),
        ),
        app_settings=dict(doc.get("appSettings", {})),
        promotion=Promotion(doc.get("promotion", "auto")),
        approve_before_traffic=doc.get("approveBeforeTraffic", False),
        validation=Validation(
            checks=checks or defaults_validation.checks,
            consecutive_successes=validation_doc.get("consecutiveSuccesses", defaults_validation.consecutive_successes),
            failure_limit=validation_doc.get("failureLimit", defaults_validation.failure_limit),
            deadline_seconds=parse_duration(validation_doc.get("deadline", defaults_validation.deadline_seconds)),
        ),
        analysis=AnalysisSettings(
            providers=providers or d.providers,
            max_error_rate=float(a.get("maxErrorRate", d.max_error_rate)),
            max_latency_ms=float(a.get("maxLatencyMs", d.max_latency_ms)),
            relative_to_stable=a.get("relativeToStable", d.relative_to_stable),
            max_error_rate_increase=float(a.get("maxErrorRateIncrease", d.max_error_rate_increase)),
            max_latency_increase_ms=float(a.get("maxLatencyIncreaseMs", d.max_latency_increase_ms)),
            min_requests=a.get("minRequests", d.min_requests),
            max_bake_extension_seconds=parse_duration(a.get("maxBakeExtension", d.max_bake_extension_seconds)),
            failure_limit=a.get("failureLimit", d.failure_limit),
            consecutive_successes=a.get("consecutiveSuccesses", d.consecutive_successes),
            progress_deadline_seconds=parse_duration(a.get("progressDeadline", d.progress_deadline_seconds)),
            interval_seconds=parse_duration(a.get("interval", d.interval_seconds)),
            mode=a.get("mode", d.mode),
        ),
        metadata=Metadata(
            commit=metadata_doc.get("commit"),
            pipeline_url=metadata_doc.get("pipelineUrl"),
            requested_by=metadata_doc.get("requestedBy"),
        ),
    )


# ---------------------------------------------------------------------------------------------
# The canonical form: a complete, valid v1 document with every default written out.
# ---------------------------------------------------------------------------------------------


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def spec_to_document(spec: ReleaseSpec) -> dict[str, Any]:
    """The spec as a release event v1 document; ``spec_from_document`` reads it back unchanged."""
    t, s, v, a, m = spec.target, spec.strategy, spec.validation, spec.analysis, spec.metadata
    strategy: dict[str, Any] = {"type": s.kind.value, "guard": s.guard_seconds}
    if s.kind is StrategyKind.CANARY:
        strategy["steps"] = [{"weight": _number(st.weight), "bake": st.bake_seconds} for st in s.steps]
    metadata = {
        k: val
        for k, val in (("commit", m.commit), ("pipelineUrl", m.pipeline_url), ("requestedBy", m.requested_by))
        if val is not None
    }
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "releaseId": spec.release_id,
        "target": {
            "subscriptionId": t.subscription_id,
            "resourceGroup": t.resource_group,
            "site": t.site,
            "slot": t.slot,
        },
        "version": spec.version,
        "artifact": {spec.artifact.kind: spec.artifact.ref},
        "appSettings": dict(spec.app_settings),
        "strategy": strategy,
        "promotion": spec.promotion.value,
        "validation": {
            "checks": [_check_document(c) for c in v.checks],
            "consecutiveSuccesses": v.consecutive_successes,
            "failureLimit": v.failure_limit,
            "deadline": v.deadline_seconds,
        },
        "analysis": {
            "providers": [_provider_document(p) for p in a.providers],
            "maxErrorRate": _number(a.max_error_rate),
            "maxLatencyMs": _number(a.max_latency_ms),
            "relativeToStable": a.relative_to_stable,
            "maxErrorRateIncrease": _number(a.max_error_rate_increase),
            "maxLatencyIncreaseMs": _number(a.max_latency_increase_ms),
            "minRequests": a.min_requests,
            "maxBakeExtension": a.max_bake_extension_seconds,
            "failureLimit": a.failure_limit,
            "consecutiveSuccesses": a.consecutive_successes,
            "progressDeadline": a.progress_deadline_seconds,
        },
        "metadata": metadata,
    }
    if a.interval_seconds != AnalysisSettings.interval_seconds:
        # Written only when set: plans stored before it existed keep their fingerprints.
        document["analysis"]["interval"] = a.interval_seconds
    if a.advisory:
        document["analysis"]["mode"] = a.mode
    if s.kind is StrategyKind.CANARY:
        document["approveBeforeTraffic"] = spec.approve_before_traffic
    return document


def _check_document(check: Check) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "path": check.path,
        "expectStatus": check.expect_status,
        "timeout": int(check.timeout_seconds),
    }
    if check.body_contains is not None:
        doc["bodyContains"] = check.body_contains
    return doc


def _provider_document(provider: ProviderSpec) -> dict[str, Any]:
    if provider.kind is ProviderKind.HTTP:
        return {"type": provider.kind.value, "path": provider.path, "requestsPerTick": provider.requests_per_tick}
    if provider.kind is ProviderKind.AZURE_MONITOR:
        return {"type": provider.kind.value}
    return {
        "type": provider.kind.value,
        "gate": provider.gate,
        "stages": [s.value for s in provider.stages],
        "timeout": int(provider.timeout_seconds),
    }


def canonical_json(spec: ReleaseSpec) -> str:
    return json.dumps(spec_to_document(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_fingerprint(spec: ReleaseSpec) -> str:
    """Same plan, same fingerprint, however the event spelled its defaults."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ExportedSchema:
    path: str
    text: str


def exported_schema() -> ExportedSchema:
    return ExportedSchema(
        path="schemas/release-event.v1.schema.json",
        text=json.dumps(EVENT_SCHEMA, indent=2, ensure_ascii=False) + "\n",
    )


if __name__ == "__main__":  # python -m shared.domain.schema  (rewrites the published schema file)
    from pathlib import Path

    schema = exported_schema()
    Path(schema.path).write_text(schema.text, encoding="utf-8")
    print(f"wrote {schema.path}")
