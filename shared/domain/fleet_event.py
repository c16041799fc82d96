"""The rollout event: one release over several sites, in waves.

A release event (v1) whose ``target`` is replaced by ``targets`` (each with an optional Azure
``region``) and ``waves``, and whose ``releaseId`` is replaced by ``rolloutId``. Every site gets the
same plan: each site's release is that document with its own target, so it is checked exactly as a
single release event is, and any error in it is named once.

    {"rolloutId": "web-2.0.0", "version": "2.0.0", "artifact": {...}, "strategy": {...},
     "targets": [{"subscriptionId": "…", "resourceGroup": "rg-web", "site": "web-weu", "region": "westeurope"}, …],
     "waves": [{"sites": ["web-weu"]}, {"sites": ["web-neu", "web-eus"], "maxInFlight": 2, "bake": "30m"}]}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.domain.durations import parse_duration
from shared.domain.model import ReleaseSpec
from shared.domain.schema import (
    MAX_EVENT_BYTES,
    SchemaError,
    matches,
    spec_from_document,
    strict_json,
)
from shared.domain.waves import MAX_SITES, Wave, child_id

ROLLOUT_KEYS = ("rolloutId", "targets", "waves")
MAX_WAVES = 20
REGION_PATTERN = r"^[a-z0-9]{2,40}$"
# No ":" (its sites' releases are "<rolloutId>:<site>", reverts "<rolloutId>:revert:<site>"), and
# short enough that every such id fits the 128 characters of a release id.
ROLLOUT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,55}$"


@dataclass(frozen=True)
class FleetEvent:
    rollout_id: str
    version: str
    sites: tuple[tuple[ReleaseSpec, str | None], ...]  # each site's release plan, and its region
    waves: tuple[Wave, ...]
    fingerprint: str = ""  # the plan as sent: the same id for another plan is a conflict


def is_rollout(body: bytes) -> bool:
    """Whether ``body`` is a rollout event rather than a release event: an object with ``targets``
    and ``waves`` and no ``target`` (the full check is parse_rollout_event)."""
    if b'"targets"' not in body or b'"waves"' not in body:
        return False
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "targets" in doc and "waves" in doc and "target" not in doc


def parse_rollout_event(body: bytes | str, *, default_rollout_id: str | None = None) -> FleetEvent:
    """Raises SchemaError naming every field that is wrong."""
    doc = strict_json(body, max_bytes=MAX_EVENT_BYTES, what="the event")
    if not isinstance(doc, dict):
        raise SchemaError([("", "a rollout event is a JSON object")])
    errors: list[tuple[str, str]] = []
    rollout_id = doc.get("rolloutId", default_rollout_id)
    if "target" in doc or "releaseId" in doc:
        errors += [(k, "a rollout has targets and a rolloutId instead") for k in ("target", "releaseId") if k in doc]
    if not isinstance(rollout_id, str) or not matches(ROLLOUT_ID_PATTERN, rollout_id):
        errors.append(("rolloutId", f"is required and must match {ROLLOUT_ID_PATTERN}"))
    targets = doc.get("targets")
    if not isinstance(targets, list) or not 1 <= len(targets) <= MAX_SITES:
        errors.append(("targets", f"must list 1 to {MAX_SITES} sites"))
        targets = []
    waves_doc = doc.get("waves")
    if not isinstance(waves_doc, list) or not 1 <= len(waves_doc) <= MAX_WAVES:
        errors.append(("waves", f"must list 1 to {MAX_WAVES} waves"))
        waves_doc = []
    template = {k: v for k, v in doc.items() if k not in ROLLOUT_KEYS}
    sites: list[tuple[ReleaseSpec, str | None]] = []
    names: list[str] = []
    template_errors_named = False
    for i, target in enumerate(targets):
        if not isinstance(target, dict):
            errors.append((f"targets[{i}]", "must be an object"))
            continue
        region = target.get("region")
        if region is not None and (not isinstance(region, str) or not matches(REGION_PATTERN, region)):
            errors.append((f"targets[{i}].region", "must be an Azure region name such as westeurope"))
            region = None
        site = target.get("site")
        release_id = child_id(rollout_id, str(site).lower()) if isinstance(rollout_id, str) and site else "x"
        child = {**template, "releaseId": release_id, "target": {k: v for k, v in target.items() if k != "region"}}
        try:
            spec = spec_from_document(child)
        except SchemaError as exc:
            for field, message in exc.errors:
                if field == "target" or field.startswith("target."):
                    errors.append((f"targets[{i}]{field[len('target') :]}", message))
                elif field != "releaseId" and not template_errors_named:
                    errors.append((field, message))
            template_errors_named = True
            continue
        name = spec.target.site.lower()
        if name in names:
            errors.append((f"targets[{i}].site", f"{name} is listed twice"))
        names.append(name)
        sites.append((spec, region.lower() if isinstance(region, str) else None))
    waves: list[Wave] = []
    placed: list[str] = []
    for n, w in enumerate(waves_doc):
        at = f"waves[{n}]"
        if not isinstance(w, dict) or set(w) - {"sites", "maxInFlight", "bake"}:
            errors.append((at, "is {sites, maxInFlight?, bake?}"))
            continue
        listed = w.get("sites")
        if not isinstance(listed, list) or not listed or not all(isinstance(x, str) for x in listed):
            errors.append((f"{at}.sites", "must list the site names of this wave"))
            continue
        wave_sites = tuple(x.lower() for x in listed)
        for x in wave_sites:
            if x not in names and names:
                errors.append((f"{at}.sites", f"{x} is not one of the targets"))
            if x in placed:
                errors.append((f"{at}.sites", f"{x} is in more than one wave"))
            placed.append(x)
        in_flight = w.get("maxInFlight", 1)
        if not isinstance(in_flight, int) or isinstance(in_flight, bool) or not 1 <= in_flight <= MAX_SITES:
            errors.append((f"{at}.maxInFlight", f"must be 1 to {MAX_SITES}"))
            in_flight = 1
        try:
            bake = parse_duration(w.get("bake", 0))
        except ValueError as exc:
            errors.append((f"{at}.bake", str(exc)))
            bake = 0
        if bake > 7 * 86400:
            errors.append((f"{at}.bake", "must be at most 7 days"))
        waves.append(Wave(wave_sites, in_flight, bake))
    missing = [x for x in names if x not in placed]
    if missing:
        errors.append(("waves", f"every target must be in a wave; missing: {', '.join(missing)}"))
    if errors:
        raise SchemaError(errors)
    assert isinstance(rollout_id, str)
    plan = json.dumps({k: v for k, v in doc.items() if k != "rolloutId"}, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(plan.encode()).hexdigest()
    return FleetEvent(rollout_id, sites[0][0].version, tuple(sites), tuple(waves), fingerprint)


def describe(event: FleetEvent) -> dict[str, Any]:
    return {"rolloutId": event.rollout_id, "sites": [s.target.site for s, _ in event.sites]}
