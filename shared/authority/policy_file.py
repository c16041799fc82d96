"""The release policy file: a YAML (or JSON) document owned by the platform team, reviewed in Git,
shipped with the app (``RELEASE_POLICY_PATH``) and validated when the app starts. An error names the
field and its line, so a bad policy never half-applies.

    version: 1
    issuers:                      # CI identities the policy trusts (OIDC)
      github: {issuer: "https://token.actions.githubusercontent.com", audience: "api://release-controller"}
    gates:                        # webhook gates, named; events refer to them by name only
      security-scan: {url: "https://gate.contoso.com/check", secretSetting: WEBHOOK_SECRET_SCAN}
    targets:                      # first match wins; a site no rule covers cannot be released
      - name: web-production
        match: {subscription: "34adfa4f-*", resourceGroup: "rg-web-*", site: "contoso-web"}
        sources:
          - oidc: github
            claims: {repository: contoso/web, ref: refs/heads/main}
          - hmac: ci2026
          - people: {role: submitter, groups: ["<object id>"]}
        artifacts: {registries: [contoso.azurecr.io/web], requireDigest: true, packageHosts: []}
        approvals: {beforePromotion: {role: approver}, twoPerson: true}
        floors: {minSteps: 2, minBake: 5m, providers: [http], gates: [security-scan]}
        settings: {forbidden: ["FEATURE_*"], allowed: [], keyVault: ["*_PASSWORD", "*_CONNECTION"]}
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any

from shared.domain.durations import DURATION_PATTERN, parse_duration
from shared.domain.model import ApprovalRule, ProviderKind, Role
from shared.domain.policy import (
    Artifacts,
    Floors,
    Issuer,
    NamedGate,
    Policy,
    Source,
    TargetRule,
)
from shared.domain.schema import GATE_NAME_PATTERN, validate
from shared.domain.windows import WindowError, parse_schedule

MAX_POLICY_BYTES = 512 * 1024
PATTERN = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"^[^\x00-\x1f]+$"}
PATTERNS = {"type": "array", "maxItems": 200, "items": PATTERN}
ROLE = {"enum": [r.value for r in Role]}
APPROVAL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"role": ROLE, "group": PATTERN},
}
_HHMM = {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_ZONE = {"type": "string", "minLength": 1, "maxLength": 64}
_REASON = {"type": "string", "maxLength": 200}
WEEKLY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["days", "from", "to"],
    "properties": {"days": {"type": "string", "maxLength": 64}, "from": _HHMM, "to": _HHMM, "timeZone": _ZONE},
}
WEEKLY_FREEZE = {**WEEKLY, "properties": {**WEEKLY["properties"], "reason": _REASON}}
ONCE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["from", "to"],
    "properties": {
        "from": {"type": "string", "maxLength": 40},
        "to": {"type": "string", "maxLength": 40},
        "timeZone": _ZONE,
        "reason": _REASON,
    },
}
CIDR = {"type": "string", "maxLength": 64, "pattern": r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"}

POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "targets"],
    "properties": {
        "version": {"const": 1},
        "issuers": {
            "type": "object",
            "maxProperties": 20,
            "propertyNames": {"pattern": GATE_NAME_PATTERN},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["issuer", "audience"],
                "properties": {
                    "issuer": {"type": "string", "pattern": r"^https?://[^\s]+$", "maxLength": 512},
                    "audience": PATTERN,
                },
            },
        },
        "gates": {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": {"pattern": GATE_NAME_PATTERN},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "pattern": r"^https://[^\s]+$", "maxLength": 2048},
                    "secretSetting": {"type": "string", "pattern": r"^WEBHOOK_SECRET_[A-Za-z0-9_]{1,100}$"},
                    "allowNetworks": {"type": "array", "maxItems": 20, "items": CIDR},
                },
            },
        },
        "targets": {
            "type": "array",
            "maxItems": 500,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "match", "sources"],
                "properties": {
                    "name": PATTERN,
                    "match": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"subscription": PATTERN, "resourceGroup": PATTERN, "site": PATTERN},
                    },
                    "sources": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 50,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "minProperties": 1,
                            "properties": {
                                "hmac": {"type": "string", "pattern": r"^[A-Za-z0-9_]{1,64}$"},
                                "oidc": {"type": "string", "pattern": GATE_NAME_PATTERN},
                                "claims": {
                                    "type": "object",
                                    "maxProperties": 20,
                                    "additionalProperties": PATTERN,
                                },
                                "people": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["role"],
                                    "properties": {"role": ROLE, "groups": PATTERNS},
                                },
                            },
                        },
                    },
                    "artifacts": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "registries": PATTERNS,
                            "requireDigest": {"type": "boolean"},
                            "packageHosts": PATTERNS,
                        },
                    },
                    "analysisMode": {"enum": ["enforce", "advisory", "either"]},
                    "quarantine": {"enum": ["site", "app", "off"]},
                    "waves": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "onFailure": {"enum": ["keep", "rollbackAll"]},
                            "allowPairedRegions": {"type": "boolean"},
                        },
                    },
                    "windows": {"type": "array", "maxItems": 50, "items": WEEKLY},
                    "freezes": {"type": "array", "maxItems": 200, "items": {"anyOf": [WEEKLY_FREEZE, ONCE]}},
                    "approvals": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "beforeTraffic": APPROVAL,
                            "beforePromotion": APPROVAL,
                            "twoPerson": {"type": "boolean"},
                        },
                    },
                    "floors": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "minSteps": {"type": "integer", "minimum": 0, "maximum": 20},
                            "minBake": {
                                "type": ["integer", "string"],
                                "pattern": DURATION_PATTERN,
                                "minimum": 0,
                                "maximum": 86400,
                            },
                            "providers": {"type": "array", "items": {"enum": [k.value for k in ProviderKind]}},
                            "gates": {"type": "array", "items": {"type": "string", "pattern": GATE_NAME_PATTERN}},
                        },
                    },
                    "settings": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"forbidden": PATTERNS, "allowed": PATTERNS, "keyVault": PATTERNS},
                    },
                },
            },
        },
    },
}


class PolicyError(ValueError):
    """The policy file is not valid; every error names its field and, for YAML, its line."""

    def __init__(self, path: str, errors: list[str]):
        self.path, self.errors = path, errors
        super().__init__(f"release policy {path} is not valid: " + "; ".join(errors))


def _load(text: str, path: str) -> tuple[Any, dict[str, int]]:
    """The document and the line of each field (YAML), read with the safe loader."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(path, [f"(document): not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    lines: dict[str, int] = {}

    def walk(node: Any, at: str) -> None:
        lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                walk(value, f"{at}.{name}" if at else name)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{at}[{index}]")

    if root is not None:
        walk(root, "")
    return document, lines


def _approval(doc: dict[str, Any] | None) -> ApprovalRule | None:
    if doc is None:
        return None
    return ApprovalRule(Role(doc.get("role", Role.APPROVER.value)), doc.get("group"))


def _source(doc: dict[str, Any]) -> Source:
    if "hmac" in doc:
        return Source(hmac_key=doc["hmac"])
    if "oidc" in doc:
        return Source(oidc_issuer=doc["oidc"], claims=dict(doc.get("claims", {})))
    people = doc.get("people", {})
    return Source(person_role=Role(people["role"]), person_groups=tuple(people.get("groups", [])))


def _semantic_errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    issuers, gates = doc.get("issuers", {}), doc.get("gates", {})
    names: set[str] = set()
    for i, rule in enumerate(doc.get("targets", [])):
        at = f"targets[{i}]"
        if rule["name"] in names:
            errors.append((f"{at}.name", f"{rule['name']!r} is used twice"))
        names.add(rule["name"])
        for j, source in enumerate(rule["sources"]):
            kinds = [k for k in ("hmac", "oidc", "people") if k in source]
            if len(kinds) != 1:
                errors.append((f"{at}.sources[{j}]", "must be exactly one of hmac, oidc, people"))
            elif "oidc" in source and source["oidc"] not in issuers:
                errors.append((f"{at}.sources[{j}].oidc", f"{source['oidc']!r} is not an issuer of this policy"))
            if "claims" in source and "oidc" not in source:
                errors.append((f"{at}.sources[{j}].claims", "only applies to an oidc source"))
        for k, gate in enumerate(rule.get("floors", {}).get("gates", [])):
            if gate not in gates:
                errors.append((f"{at}.floors.gates[{k}]", f"{gate!r} is not a gate of this policy"))
        for kind in ("windows", "freezes"):
            for k, entry in enumerate(rule.get(kind, [])):
                try:
                    parse_schedule([entry] if kind == "windows" else [], [entry] if kind == "freezes" else [])
                except WindowError as exc:
                    errors.append((f"{at}.{kind}[{k}]", str(exc)))
    for name, gate in gates.items():
        for k, network in enumerate(gate.get("allowNetworks", [])):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                errors.append((f"gates.{name}.allowNetworks[{k}]", f"{network!r} is not a network (CIDR)"))
    return errors


def parse_policy(text: str, path: str = "release-policy.yaml") -> Policy:
    """The policy in ``text``. Raises PolicyError listing every problem with its field and line."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError(path, [f"(document): larger than {MAX_POLICY_BYTES} bytes"])
    document, lines = _load(text, path)
    problems = validate(document, POLICY_SCHEMA)
    if not problems:
        problems = _semantic_errors(document)
    if problems:

        def where(field: str) -> str:
            line = lines.get(field)
            while line is None and field:
                field = field.rsplit(".", 1)[0] if "." in field else field.rsplit("[", 1)[0]
                line = lines.get(field)
            return f" (line {line})" if line else ""

        raise PolicyError(path, [f"{f or '(document)'}{where(f)}: {m}" for f, m in problems])
    return Policy(
        rules=tuple(
            TargetRule(
                name=r["name"],
                subscription=r["match"].get("subscription", "*"),
                resource_group=r["match"].get("resourceGroup", "*"),
                site=r["match"].get("site", "*"),
                sources=tuple(_source(s) for s in r["sources"]),
                artifacts=Artifacts(
                    registries=tuple(r.get("artifacts", {}).get("registries", [])),
                    require_digest=r.get("artifacts", {}).get("requireDigest", False),
                    package_hosts=tuple(r.get("artifacts", {}).get("packageHosts", [])),
                ),
                before_traffic=_approval(r.get("approvals", {}).get("beforeTraffic")),
                before_promotion=_approval(r.get("approvals", {}).get("beforePromotion")),
                two_person=r.get("approvals", {}).get("twoPerson", True),
                floors=Floors(
                    min_steps=r.get("floors", {}).get("minSteps", 0),
                    min_bake_seconds=parse_duration(r.get("floors", {}).get("minBake", 0)),
                    providers=tuple(ProviderKind(p) for p in r.get("floors", {}).get("providers", [])),
                    gates=tuple(r.get("floors", {}).get("gates", [])),
                ),
                forbidden_settings=tuple(r.get("settings", {}).get("forbidden", [])),
                allowed_settings=tuple(r.get("settings", {}).get("allowed", [])),
                key_vault_settings=tuple(r.get("settings", {}).get("keyVault", [])),
                analysis_mode=r.get("analysisMode", "enforce"),
                quarantine=r.get("quarantine", "site"),
                schedule=parse_schedule(r.get("windows", []), r.get("freezes", [])),
                rollout_on_failure=r.get("waves", {}).get("onFailure", "keep"),
                allow_paired_regions=r.get("waves", {}).get("allowPairedRegions", False),
            )
            for r in document["targets"]
        ),
        gates={
            name: NamedGate(g["url"], g.get("secretSetting"), tuple(g.get("allowNetworks", [])))
            for name, g in document.get("gates", {}).items()
        },
        issuers={name: Issuer(i["issuer"], i["audience"]) for name, i in document.get("issuers", {}).items()},
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
    )


def load_policy(path: str | Path) -> tuple[Policy, dict[str, Any]]:
    """The policy in the file at ``path``, and its document (as ``GET /api/policy`` shows it)."""
    location = Path(path)
    try:
        text = location.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [f"(document): cannot be read: {exc}"]) from None
    policy = parse_policy(text, str(path))
    import yaml

    return policy, json.loads(json.dumps(yaml.safe_load(text), default=str))
