"""A release event from a file (JSON or YAML) and/or flags, checked locally against the v1 schema
before anything is sent, as the exact bytes that will be signed and sent."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

from releasectl.client import CommandError
from releasectl.outcomes import Exit
from shared.domain.schema import SchemaError, parse_release_event

MAX_SESSION_ID = 128  # Service Bus's limit on a session id


def _load(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(Exit.USAGE, f"cannot read {path}: {exc.strerror}") from None
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CommandError(Exit.USAGE, f"{path} is not valid YAML: {exc}") from None
    else:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CommandError(Exit.USAGE, f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CommandError(Exit.USAGE, f"{path} does not hold a JSON object")
    return doc


def _steps(text: str) -> list[dict[str, Any]]:
    """``10:5m,50:10m`` → [{"weight": 10, "bake": "5m"}, {"weight": 50, "bake": "10m"}]."""
    steps = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        weight, _, bake = part.partition(":")
        if not weight.isdigit() or not bake:
            raise CommandError(Exit.USAGE, f"--steps: {part!r} is not WEIGHT:BAKE (e.g. 10:5m)")
        steps.append({"weight": int(weight), "bake": bake})
    return steps


def _ci_metadata() -> dict[str, str]:
    """What the CI system running this says about the build (GitHub Actions, Azure DevOps)."""
    env = os.environ
    found: dict[str, str] = {}
    if env.get("GITHUB_SHA"):
        found["commit"] = env["GITHUB_SHA"][:40]
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            found["pipelineUrl"] = (
                f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
            )
        if env.get("GITHUB_ACTOR"):
            found["requestedBy"] = env["GITHUB_ACTOR"]
    elif env.get("BUILD_SOURCEVERSION"):
        found["commit"] = env["BUILD_SOURCEVERSION"][:40]
        if env.get("SYSTEM_COLLECTIONURI") and env.get("SYSTEM_TEAMPROJECT") and env.get("BUILD_BUILDID"):
            found["pipelineUrl"] = (
                f"{env['SYSTEM_COLLECTIONURI'].rstrip('/')}/{env['SYSTEM_TEAMPROJECT']}/_build/results"
                f"?buildId={env['BUILD_BUILDID']}"
            )
        if env.get("BUILD_REQUESTEDFOR"):
            found["requestedBy"] = env["BUILD_REQUESTEDFOR"]
    return found


def build(args: Namespace) -> dict[str, Any]:
    """The event document: the file's, with every flag given laid over it."""
    doc = _load(args.file) if args.file else {}
    target = doc.setdefault("target", {})
    for flag, field in (
        ("subscription", "subscriptionId"),
        ("resource_group", "resourceGroup"),
        ("site", "site"),
        ("slot", "slot"),
    ):
        if getattr(args, flag, None):
            target[field] = getattr(args, flag)
    if args.release_id:
        doc["releaseId"] = args.release_id
    if args.version:
        doc["version"] = args.version
    if args.image and args.package:
        raise CommandError(Exit.USAGE, "--image and --package: one artifact per release")
    if args.image:
        doc["artifact"] = {"container": args.image}
    if args.package:
        doc["artifact"] = {"package": args.package}
    for pair in args.set or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(Exit.USAGE, f"--set: {pair!r} is not NAME=VALUE")
        doc.setdefault("appSettings", {})[name] = value
    if args.strategy or args.steps or args.guard:
        strategy = doc.setdefault("strategy", {})
        if args.strategy:
            strategy["type"] = args.strategy
        if args.steps:
            strategy["steps"] = _steps(args.steps)
        if args.guard:
            strategy["guard"] = args.guard
    if args.promotion:
        doc["promotion"] = args.promotion
    if args.approve_before_traffic:
        doc["approveBeforeTraffic"] = True
    if args.check:
        doc.setdefault("validation", {})["checks"] = [{"path": p} for p in args.check]
    metadata = {k: v for k, v in _ci_metadata().items() if k not in doc.get("metadata", {})}
    if metadata:
        doc.setdefault("metadata", {}).update(metadata)
    return doc


def encode(doc: dict[str, Any]) -> tuple[bytes, str]:
    """The exact bytes to sign and send, and the release id. Raises CommandError (usage) naming every
    field the controller would refuse."""
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    try:
        spec = parse_release_event(raw)
    except SchemaError as exc:
        fields = "; ".join(f"{f or '(event)'}: {m}" for f, m in exc.errors)
        raise CommandError(Exit.USAGE, f"the event is not valid: {fields}") from None
    return raw, spec.release_id


def session_id(doc: dict[str, Any]) -> str:
    """One site, one Service Bus session (its events are handled in order): ``<sub>/<rg>/<site>``,
    lower case; a key longer than Service Bus allows keeps the site's name and a hash of the rest."""
    t = doc["target"]
    key = f"{t['subscriptionId']}/{t['resourceGroup']}/{t['site']}".lower()
    if len(key) <= MAX_SESSION_ID:
        return key
    return f"{t['site'].lower()}~{hashlib.sha256(key.encode()).hexdigest()[:40]}"
