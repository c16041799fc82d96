"""The HTTP API's vocabulary, independent of Azure Functions: JSON views, problems, edge validation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.adapters.codec import actor_to_record, iso, policy_to_record, target_record
from shared.domain import lifecycle
from shared.domain.ledger import SiteLedger
from shared.domain.model import (
    Evidence,
    OverrideKind,
    Phase,
    Quarantine,
    Release,
    SiteState,
    Target,
    VersionStats,
)
from shared.domain.policy import KEY_VAULT_REFERENCE
from shared.domain.schema import (
    RELEASE_ID_PATTERN,
    RESOURCE_GROUP_PATTERN,
    SITE_PATTERN,
    SLOT_PATTERN,
    SUBSCRIPTION_PATTERN,
    SchemaError,
    matches,
    spec_to_document,
    strict_json,
)
from shared.ports import ReleaseSummary, StoredAudit, StoredMeasurement

PROBLEM_BASE = "https://release-controller.example/problems/"
MAX_OVERRIDE_BODY = 8 * 1024
MAX_REASON = 1000
MAX_PAGE = 200


@dataclass
class Problem(Exception):
    """An RFC 9457 problem; raised at the edge, rendered as application/problem+json."""

    status: int
    slug: str
    title: str
    detail: str
    errors: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


def bad_request(detail: str, errors: list[tuple[str, str]] | None = None, slug: str = "invalid-request") -> Problem:
    return Problem(
        400,
        slug,
        "The request is not valid",
        detail,
        [{"field": f or "(body)", "message": m} for f, m in (errors or [])],
    )


def spec_view(release: Release) -> dict[str, Any]:
    """The release's plan as its event document, without a single app setting value: each key
    says only whether its value is a Key Vault reference."""
    document = spec_to_document(release.spec)
    document["appSettings"] = {
        name: {"keyVaultReference": bool(KEY_VAULT_REFERENCE.match(value))}
        for name, value in release.spec.app_settings.items()
    }
    return document


def evidence_view(e: Evidence) -> dict[str, Any]:
    """What one provider saw of both versions over the current step (or guard window)."""

    def side(v: VersionStats) -> dict[str, Any]:
        return {"requests": v.requests, "errors": v.errors, "latencyMs": v.latency_ms}

    return {
        "provider": e.provider.value,
        "latencyStatistic": e.latency_statistic,
        "canary": side(e.canary),
        "stable": side(e.stable),
    }


def status_view(release: Release, site: SiteState | None = None) -> dict[str, Any]:
    now = lifecycle.status(release, site)
    return {
        "summary": now.summary,
        "waitingFor": now.waiting_for,
        "until": iso(now.until),
        "nextCheckAt": iso(now.next_check_at),
    }


def release_view(release: Release, site: SiteState | None = None) -> dict[str, Any]:
    """``site``: the release's site row, which a queued release's status names what it waits behind."""
    spec = release.spec
    steps = spec.strategy.steps
    step = None
    if spec.is_canary and release.step >= 0:
        step = {"index": release.step + 1, "of": len(steps), "weight": steps[release.step].weight}
    return {
        "releaseId": release.id,
        "version": spec.version,
        "target": target_record(spec.target),
        "strategy": spec.strategy.kind.value,
        "phase": release.phase.value,
        "phaseMeaning": release.phase.meaning,
        "status": status_view(release, site),
        "phaseSince": iso(release.phase_since),
        "paused": release.paused,
        "pauseReason": release.pause_reason,
        "inconclusive": release.inconclusive,
        "gate": release.gate.value if release.gate else None,
        "step": step,
        "weight": release.weight,
        "traffic": {
            "newVersionPercent": lifecycle.new_version_share(release),
            "routingRuleWeight": release.weight,
            "meaning": (
                "production runs the new version: it serves all traffic, and no routing rule is left"
                if release.phase in (Phase.GUARDING, Phase.SUCCEEDED)
                else "the routing rule's share of production traffic sent to the new version's slot"
            ),
        },
        "reason": release.reason,
        "swap": (
            {
                "purpose": release.swap.purpose,
                "claimedAt": iso(release.swap.claimed_at),
                "started": release.swap.token is not None,
            }
            if release.swap
            else None
        ),
        "holdsSite": release.holds_site,
        "alertsPending": len(release.outbox),
        "validation": {
            "rounds": release.validation.rounds,
            "streak": release.validation.streak,
            "failures": release.validation.failures,
        },
        "analysis": {
            "mode": spec.analysis.mode,
            "lastOutcome": release.analysis.last_outcome,
            "successes": release.analysis.successes,
            "failures": release.analysis.failures,
            "evidence": [evidence_view(e) for e in release.analysis.evidence],
        },
        "retryOf": spec.retry_of,
        "retriedAs": release.retried_as,
        "redeployOf": spec.redeploy_of,
        "redeployedAs": list(release.redeployed_as),
        "supersededBy": release.superseded_by,
        "createdAt": iso(release.created_at),
        "updatedAt": iso(release.updated_at),
        "finishedAt": iso(release.finished_at),
        "spec": spec_view(release),
        "submitters": [{k: v for k, v in actor_to_record(a).items() if k != "groups"} for a in release.submitters],
        "policy": policy_to_record(release.policy),
        "links": release_links(release.id),
    }


def release_links(release_id: str) -> dict[str, str]:
    return {
        "self": f"/api/releases/{release_id}",
        "audit": f"/api/releases/{release_id}/audit",
        "evidence": f"/api/releases/{release_id}/evidence",
    }


def measurements_view(release: Release, kept: list[StoredMeasurement]) -> dict[str, Any]:
    """Every measurement kept for a release, newest first: when, over which window, its numbers
    and limits, the verdict and why. ``total`` counts all ever taken and ``verdicts`` counts them by
    verdict, the oldest beyond the newest kept included."""
    return {
        "releaseId": release.id,
        "total": release.measured_seq,
        "kept": len(kept),
        "verdicts": dict(release.verdicts),
        "measurements": [{"seq": m.seq, **m.record} for m in kept],
        "links": release_links(release.id),
    }


def stats_view(sites: list[SiteLedger]) -> dict[str, Any]:
    """The ledger: per site and overall, releases by phase and the bad ones stopped early."""

    def stopped(r: Release) -> dict[str, Any]:
        return {
            "releaseId": r.id,
            "version": r.spec.version,
            "site": r.spec.target.site,
            "step": r.step + 1 if r.step >= 0 else None,
            "finishedAt": iso(r.finished_at),
            "reason": r.reason,
            "evidence": [evidence_view(e) for e in r.analysis.evidence],
            "links": release_links(r.id),
        }

    overall: dict[str, int] = {}
    for site in sites:
        for phase, count in site.outcomes.items():
            overall[phase] = overall.get(phase, 0) + count
    return {
        "overall": {
            "releases": overall,
            "stoppedEarly": sum(len(site.stopped_early) for site in sites),
        },
        "sites": [
            {
                "siteKey": site.site_key,
                "site": site.site,
                "releases": site.outcomes,
                "stoppedEarly": [stopped(r) for r in site.stopped_early],
            }
            for site in sites
        ],
    }


def summary_view(s: ReleaseSummary) -> dict[str, Any]:
    return {
        "releaseId": s.release_id,
        "version": s.version,
        "target": {
            "subscriptionId": s.subscription_id,
            "resourceGroup": s.resource_group,
            "site": s.site,
            "slot": s.slot,
        },
        "phase": s.phase.value,
        "paused": s.paused,
        "weight": s.weight,
        "createdAt": iso(s.created_at),
        "updatedAt": iso(s.updated_at),
        "links": release_links(s.release_id),
    }


def audit_view(stored: StoredAudit) -> dict[str, Any]:
    e = stored.entry
    return {
        "seq": stored.seq,
        "at": iso(e.at),
        "actor": e.actor,
        "action": e.action,
        "message": e.message,
        "phaseFrom": e.phase_from.value,
        "phaseTo": e.phase_to.value,
        "weight": e.weight,
        "details": e.details,
    }


# ---------------------------------------------------------------------------------------------
# Edge validation
# ---------------------------------------------------------------------------------------------


def check_release_id(value: str) -> str:
    if not matches(RELEASE_ID_PATTERN, value):
        raise Problem(
            404,
            "release-not-found",
            "No such release",
            f"{value!r} is not a release id (ids match {RELEASE_ID_PATTERN})",
        )
    return value


def parse_action(value: str) -> OverrideKind:
    try:
        return OverrideKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in OverrideKind)
        raise Problem(
            404, "unknown-action", "No such action", f"{value!r} is not an action; use one of {allowed}"
        ) from None


def require_json(headers: Mapping[str, str]) -> None:
    """A body the API reads must say it is JSON."""
    content_type = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "The body must be JSON",
            f"send Content-Type: application/json (got {content_type[:80] or 'none'!r})",
            [{"field": "Content-Type", "message": "must be application/json"}],
        )


def parse_reason(body: bytes) -> str:
    """The override body: {"reason": "..."}, required so the audit says why."""
    if not body.strip():
        raise bad_request("send a JSON body with a reason", [("reason", "is required")])
    try:
        doc = strict_json(body, max_bytes=MAX_OVERRIDE_BODY, what="the body")
    except SchemaError as exc:
        errors = [(f or "(body)", m) for f, m in exc.errors]
        raise bad_request('the body is not a JSON object like {"reason": "..."}', errors) from None
    if not isinstance(doc, dict):
        raise bad_request("the body must be a JSON object", [("(body)", "must be a JSON object")])
    errors = [(k, "is not a known field") for k in doc if k != "reason"]
    reason = doc.get("reason")
    problem = reason_problem(reason)
    if problem:
        errors.append(("reason", problem))
    if errors:
        raise bad_request("the override request is not valid", errors)
    assert isinstance(reason, str)
    return reason.strip()


def check_site_key(value: str) -> str:
    """A site key from a route: ``subscriptionId~resourceGroup~site`` (lower case as stored)."""
    parts = value.lower().split("~")
    patterns = (SUBSCRIPTION_PATTERN, RESOURCE_GROUP_PATTERN, SITE_PATTERN)
    if len(parts) != 3 or not all(matches(p, part) for p, part in zip(patterns, parts, strict=True)):
        raise bad_request("no such site", [("siteKey", "is subscriptionId~resourceGroup~site")])
    return "~".join(parts)


def parse_redeploy(body: bytes) -> tuple[Target, str]:
    """``{"to": {"subscriptionId", "resourceGroup", "site", "slot"?}, "reason": "..."}``."""
    try:
        doc = strict_json(body or b"{}", max_bytes=MAX_OVERRIDE_BODY, what="the body")
    except SchemaError as exc:
        raise bad_request("the body is not valid JSON", [(f or "(body)", m) for f, m in exc.errors]) from None
    if not isinstance(doc, dict):
        raise bad_request("the body must be a JSON object", [("(body)", "must be a JSON object")])
    errors = [(k, "is not a known field") for k in doc if k not in ("to", "reason")]
    problem = reason_problem(doc.get("reason"))
    if problem:
        errors.append(("reason", problem))
    to = doc.get("to")
    fields = {
        "subscriptionId": SUBSCRIPTION_PATTERN,
        "resourceGroup": RESOURCE_GROUP_PATTERN,
        "site": SITE_PATTERN,
        "slot": SLOT_PATTERN,
    }
    if not isinstance(to, dict):
        errors.append(("to", "is required: the site to redeploy to, {subscriptionId, resourceGroup, site, slot?}"))
    else:
        errors += [(f"to.{k}", "is not a known field") for k in to if k not in fields]
        for name, pattern in fields.items():
            value = to.get(name, "staging" if name == "slot" else None)
            if not isinstance(value, str) or not matches(pattern, value):
                errors.append((f"to.{name}", f"is required and must match {pattern}"))
    if errors:
        raise bad_request("the redeploy request is not valid", errors)
    assert isinstance(to, dict)
    target = Target(to["subscriptionId"], to["resourceGroup"], to["site"], to.get("slot", "staging"))
    return target, str(doc["reason"]).strip()


def reason_problem(reason: object) -> str | None:
    """What is wrong with an override's reason (the API's JSON or the dashboard's form), if anything."""
    if not isinstance(reason, str) or not reason.strip():
        return "is required: say why, for the audit trail"
    if len(reason) > MAX_REASON or any((ord(c) < 0x20 and c not in "\t") or ord(c) == 0x7F for c in reason):
        return f"must be at most {MAX_REASON} characters of text on one line"
    return None


@dataclass(frozen=True)
class ListQuery:
    site_key: str | None
    site: str | None
    phase: Phase | None
    limit: int
    cursor: str | None


def _page_limit(params: Mapping[str, str], errors: list[tuple[str, str]]) -> int:
    """``limit`` (1..MAX_PAGE, ASCII digits only), 50 when absent; a bad one is added to ``errors``."""
    raw = params.get("limit")
    if not raw:
        return 50
    if not re.fullmatch(r"[0-9]{1,3}", raw, flags=re.ASCII) or not 1 <= int(raw) <= MAX_PAGE:
        errors.append(("limit", f"must be an integer from 1 to {MAX_PAGE}"))
        return 50
    return int(raw)


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    errors: list[tuple[str, str]] = []
    known = {"site", "subscriptionId", "resourceGroup", "phase", "limit", "cursor", "code"}  # code: the function key
    names = "site, subscriptionId, resourceGroup, phase, limit, cursor"
    errors += [(k[:64], f"is not a known query parameter ({names})") for k in params if k not in known]
    site = params.get("site") or None
    sub, rg = params.get("subscriptionId") or None, params.get("resourceGroup") or None
    site_key = None
    if sub or rg:
        if not (sub and rg and site):
            errors.append(("subscriptionId", "subscriptionId, resourceGroup and site go together"))
        elif not re.fullmatch(r"[0-9a-fA-F-]{36}", sub, flags=re.ASCII):
            errors.append(("subscriptionId", "must be a subscription id (a GUID)"))
        elif not re.fullmatch(r"[A-Za-z0-9_().-]{1,90}", rg, flags=re.ASCII):
            errors.append(("resourceGroup", "must be a resource group name"))
        else:
            site_key = f"{sub}~{rg}~{site}".lower()
    if site is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,60}", site, flags=re.ASCII):
        errors.append(("site", "must be an App Service site name"))
    phase = None
    if params.get("phase"):
        try:
            phase = Phase(params["phase"][:64])
        except ValueError:
            errors.append(("phase", "must be one of " + ", ".join(p.value for p in Phase)))
    limit = _page_limit(params, errors)
    cursor = params.get("cursor") or None
    if cursor is not None and (len(cursor) > 2048 or not re.fullmatch(r"[A-Za-z0-9_=-]+", cursor, flags=re.ASCII)):
        errors.append(("cursor", "is not a cursor this API handed out"))
    if errors:
        raise bad_request("the query is not valid", errors)
    return ListQuery(
        site_key=site_key, site=site if site_key is None else None, phase=phase, limit=limit, cursor=cursor
    )


@dataclass(frozen=True)
class RejectionsQuery:
    day: str
    limit: int


def parse_rejections_query(params: Mapping[str, str], today: str) -> RejectionsQuery:
    errors: list[tuple[str, str]] = []
    known = {"day", "limit", "code"}  # code: the function key
    errors += [(k[:64], "is not a known query parameter (day, limit)") for k in params if k not in known]
    day = params.get("day") or today
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", day, flags=re.ASCII):
        errors.append(("day", "must be a UTC date, YYYY-MM-DD"))
    else:
        try:
            datetime.strptime(day, "%Y-%m-%d")
        except ValueError:
            errors.append(("day", "must be a UTC date, YYYY-MM-DD"))
    limit = _page_limit(params, errors)
    if errors:
        raise bad_request("the query is not valid", errors)
    return RejectionsQuery(day, limit)


def rejection_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored rejection as the API shows it: the body as text (it was stored with setting values
    redacted), the errors as fields."""
    body = bytes(row.get("body") or b"")
    return {
        "id": row["id"],
        "receivedAt": row["receivedAt"],
        "source": row["source"],
        "messageId": row["messageId"],
        "reason": row["reason"],
        "errors": [{"field": f or "(event)", "message": m} for f, m in row["errors"]],
        "body": body.decode("utf-8", errors="replace"),
        "bodyLength": row["bodyLength"],
        "bodyTruncated": row["bodyTruncated"],
        # what arrived, before anything was withheld: to match it with what the sender has
        "received": {
            k: v for k, v in (row.get("details") or {}).items() if k in ("refusal", "receivedBytes", "receivedSha256")
        },
    }


def quarantine_view(site_key: str, q: Quarantine) -> dict[str, Any]:
    return {
        "siteKey": site_key,
        "site": site_key.rsplit("~", maxsplit=1)[-1],
        "version": q.version,
        "releaseId": q.release_id,
        "reason": q.reason,
        "at": iso(q.at),
        "rule": q.rule,
        "links": {
            "release": f"/api/releases/{q.release_id}",
            "lift": f"/api/sites/{site_key}/quarantine/{q.version}/lift",
        },
    }


def rollout_view(r: Any, children: Mapping[str, Release]) -> dict[str, Any]:
    """A rollout with every site: its wave, where it stands, and its release's own status."""

    def site(run: Any) -> dict[str, Any]:
        child = children.get(run.release_id)
        planned = r.spec.site(run.site)
        return {
            "site": run.site,
            "region": planned.region,
            "target": target_record(planned.spec.target),
            "wave": run.wave + 1,
            "state": run.state,
            "outcome": run.outcome,
            "releaseId": run.release_id,
            "phase": child.phase.value if child else None,
            "status": status_view(child)["summary"] if child else None,
            "newVersionPercent": lifecycle.new_version_share(child) if child else 0.0,
            "previous": run.previous,
            "revertId": run.revert_id,
            "links": release_links(run.release_id) if child else None,
        }

    return {
        "rolloutId": r.id,
        "version": r.spec.version,
        "phase": r.phase,
        "reason": r.reason,
        "wave": {"index": r.wave + 1, "of": len(r.spec.waves)},
        "bakeUntil": iso(r.bake_until),
        "onFailure": r.spec.on_failure,
        "waves": [
            {"sites": list(w.sites), "maxInFlight": w.max_in_flight, "bakeSeconds": w.bake_seconds}
            for w in r.spec.waves
        ],
        "sites": [site(run) for run in r.runs],
        "createdAt": iso(r.created_at),
        "updatedAt": iso(r.updated_at),
        "finishedAt": iso(r.finished_at),
        "log": [
            {"at": iso(e.at), "actor": e.actor, "action": e.action, "message": e.message, "details": dict(e.details)}
            for e in r.log
        ],
        "links": {"self": f"/api/rollouts/{r.id}"},
    }
