"""Release and site state to and from JSON-ready dicts (for storage and for the HTTP API)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.domain.model import (
    Actor,
    ActorKind,
    Alert,
    AnalysisProgress,
    ApprovalRule,
    Artifact,
    AuditEntry,
    EffectivePolicy,
    Evidence,
    Gate,
    LastGood,
    Phase,
    ProviderKind,
    Quarantine,
    Release,
    ReleaseSpec,
    Role,
    SiteState,
    SwapProgress,
    Target,
    ValidationProgress,
    VersionStats,
    WebhookStage,
)
from shared.domain.schema import spec_from_document, spec_to_document
from shared.domain.windows import schedule_from_record, schedule_to_record


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _stats(s: VersionStats) -> dict[str, Any]:
    return {"requests": s.requests, "errors": s.errors, "latencyMs": s.latency_ms}


def _stats_from(d: dict[str, Any]) -> VersionStats:
    return VersionStats(requests=d["requests"], errors=d["errors"], latency_ms=d.get("latencyMs"))


def spec_to_record(spec: ReleaseSpec) -> dict[str, Any]:
    """The spec as its event document (webhook gates by name), with what the policy resolved."""
    gates = [
        {"index": i, "url": p.url, "secretSetting": p.secret_setting, "allowNetworks": list(p.allow_networks)}
        for i, p in enumerate(spec.analysis.providers)
        if p.url is not None
    ]
    record = {"event": spec_to_document(spec), "retryOf": spec.retry_of, "gates": gates}
    if spec.redeploy_of:
        record["redeployOf"] = spec.redeploy_of
    return record


def spec_from_record(record: dict[str, Any]) -> ReleaseSpec:
    spec = spec_from_document(record["event"])
    providers = list(spec.analysis.providers)
    for gate in record.get("gates", []):
        providers[gate["index"]] = replace(
            providers[gate["index"]],
            url=gate["url"],
            secret_setting=gate.get("secretSetting"),
            allow_networks=tuple(gate.get("allowNetworks", [])),
        )
    spec = replace(spec, analysis=replace(spec.analysis, providers=tuple(providers)))
    return replace(spec, retry_of=record.get("retryOf") or None, redeploy_of=record.get("redeployOf") or None)


def actor_to_record(a: Actor) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind.value,
        "roles": sorted(r.value for r in a.roles),
        "groups": sorted(a.groups),
    }


def actor_from_record(d: dict[str, Any]) -> Actor:
    return Actor(
        id=d["id"],
        name=d["name"],
        kind=ActorKind(d["kind"]),
        roles=frozenset(Role(r) for r in d.get("roles", [])),
        groups=frozenset(d.get("groups", [])),
    )


def _approval(rule: ApprovalRule | None) -> dict[str, Any] | None:
    return {"role": rule.role.value, "group": rule.group} if rule else None


def _approval_from(d: dict[str, Any] | None) -> ApprovalRule | None:
    return ApprovalRule(Role(d["role"]), d.get("group")) if d else None


def policy_to_record(p: EffectivePolicy | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "rule": p.rule,
        "digest": p.digest,
        "beforeTraffic": _approval(p.before_traffic),
        "beforePromotion": _approval(p.before_promotion),
        "twoPerson": p.two_person,
        "changes": list(p.changes),
        "quarantine": p.quarantine,
        "schedule": schedule_to_record(p.schedule),
    }


def policy_from_record(d: dict[str, Any] | None) -> EffectivePolicy | None:
    if not d:
        return None
    return EffectivePolicy(
        rule=d["rule"],
        digest=d["digest"],
        before_traffic=_approval_from(d.get("beforeTraffic")),
        before_promotion=_approval_from(d.get("beforePromotion")),
        two_person=d.get("twoPerson", True),
        changes=tuple(d.get("changes", [])),
        quarantine=d.get("quarantine", "site"),
        schedule=schedule_from_record(d.get("schedule")),
    )


def state_to_record(r: Release) -> dict[str, Any]:
    """Everything about a release except its spec."""
    a = r.analysis
    return {
        "phase": r.phase.value,
        "createdAt": iso(r.created_at),
        "phaseSince": iso(r.phase_since),
        "updatedAt": iso(r.updated_at),
        "paused": r.paused,
        "pauseReason": r.pause_reason,
        "held": r.held,
        "heldUntil": iso(r.held_until),
        "scheduleOverride": r.schedule_override,
        "inconclusive": r.inconclusive,
        "step": r.step,
        "stepStartedAt": iso(r.step_started_at),
        "weight": r.weight,
        "gate": r.gate.value if r.gate else None,
        "validation": {
            "rounds": r.validation.rounds,
            "streak": r.validation.streak,
            "failures": r.validation.failures,
        },
        "analysis": {
            "evidence": [
                {
                    "provider": e.provider.value,
                    "canary": _stats(e.canary),
                    "stable": _stats(e.stable),
                    "latencyStatistic": e.latency_statistic,
                }
                for e in a.evidence
            ],
            "successes": a.successes,
            "failures": a.failures,
            "extensionUntil": iso(a.extension_until),
            "lastOutcome": a.last_outcome,
        },
        "swap": (
            {"purpose": r.swap.purpose, "claimedAt": iso(r.swap.claimed_at), "token": r.swap.token} if r.swap else None
        ),
        "gatePending": r.gate_pending.value if r.gate_pending else None,
        "gatesPassed": [g.value for g in r.gates_passed],
        "deployAttempts": r.deploy_attempts,
        "transientFailures": r.transient_failures,
        "failingSince": iso(r.failing_since),
        "reachedUsers": r.reached_users,
        "reachedProduction": r.reached_production,
        "holdsSite": r.holds_site,
        "outbox": [_alert_record(a) for a in r.outbox],
        "alertsRaised": r.alerts_raised,
        "verdicts": dict(r.verdicts),
        "submitters": [actor_to_record(a) for a in r.submitters],
        "policy": policy_to_record(r.policy),
        "reason": r.reason,
        "retriedAs": r.retried_as,
        "redeployedAs": list(r.redeployed_as),
        "supersededBy": r.superseded_by,
        "nextCheckAt": iso(r.next_check_at),
        "finishedAt": iso(r.finished_at),
    }


def release_from_records(spec: ReleaseSpec, s: dict[str, Any]) -> Release:
    a = s["analysis"]
    swap = s.get("swap")
    created_at = parse_iso(s["createdAt"])
    assert created_at is not None
    return Release(
        spec=spec,
        created_at=created_at,
        phase=Phase(s["phase"]),
        phase_since=parse_iso(s.get("phaseSince")),
        updated_at=parse_iso(s.get("updatedAt")),
        paused=s["paused"],
        pause_reason=s.get("pauseReason"),
        held=s.get("held"),
        held_until=parse_iso(s.get("heldUntil")),
        schedule_override=s.get("scheduleOverride"),
        inconclusive=s.get("inconclusive", False),
        step=s["step"],
        step_started_at=parse_iso(s.get("stepStartedAt")),
        weight=float(s["weight"]),
        gate=Gate(s["gate"]) if s.get("gate") else None,
        validation=ValidationProgress(**s["validation"]),
        analysis=AnalysisProgress(
            evidence=tuple(
                Evidence(
                    provider=ProviderKind(e["provider"]),
                    canary=_stats_from(e["canary"]),
                    stable=_stats_from(e["stable"]),
                    latency_statistic=e.get("latencyStatistic", "p95"),
                )
                for e in a["evidence"]
            ),
            successes=a["successes"],
            failures=a["failures"],
            extension_until=parse_iso(a.get("extensionUntil")),
            last_outcome=a.get("lastOutcome"),
        ),
        swap=(
            SwapProgress(purpose=swap["purpose"], claimed_at=parse_iso(swap["claimedAt"]), token=swap.get("token"))  # type: ignore[arg-type]
            if swap
            else None
        ),
        gate_pending=WebhookStage(s["gatePending"]) if s.get("gatePending") else None,
        gates_passed=tuple(WebhookStage(g) for g in s.get("gatesPassed", [])),
        deploy_attempts=s["deployAttempts"],
        transient_failures=s["transientFailures"],
        failing_since=parse_iso(s.get("failingSince")),
        reached_users=s.get("reachedUsers", False),
        reached_production=s.get("reachedProduction", False),
        holds_site=s.get("holdsSite", False),
        outbox=tuple(_alert_from_record(a) for a in s.get("outbox", [])),
        alerts_raised=s.get("alertsRaised", 0),
        verdicts=tuple(sorted((str(k), int(v)) for k, v in (s.get("verdicts") or {}).items())),
        submitters=tuple(actor_from_record(a) for a in s.get("submitters", [])),
        policy=policy_from_record(s.get("policy")),
        reason=s.get("reason"),
        retried_as=s.get("retriedAs"),
        redeployed_as=tuple(s.get("redeployedAs") or ()),
        superseded_by=s.get("supersededBy"),
        next_check_at=parse_iso(s.get("nextCheckAt")),
        finished_at=parse_iso(s.get("finishedAt")),
    )


def last_good_to_record(g: LastGood | None) -> dict[str, Any] | None:
    if g is None:
        return None
    return {
        "releaseId": g.release_id,
        "version": g.version,
        "artifact": {g.artifact.kind: g.artifact.ref},
        "appSettings": g.app_settings,
    }


def last_good_from_record(d: dict[str, Any] | None) -> LastGood | None:
    if not d:
        return None
    kind, ref = next(iter(d["artifact"].items()))
    return LastGood(d["releaseId"], d["version"], Artifact(kind, ref), dict(d.get("appSettings", {})))


def site_to_record(site: SiteState) -> dict[str, Any]:
    record: dict[str, Any] = {
        "active": site.active,
        "queued": site.queued,
        "lastGood": last_good_to_record(site.last_good),
    }
    if site.quarantined:
        record["quarantined"] = [
            {"version": q.version, "releaseId": q.release_id, "reason": q.reason, "at": iso(q.at), "rule": q.rule}
            for q in site.quarantined
        ]
    return record


def site_from_record(site_key: str, d: dict[str, Any]) -> SiteState:
    return SiteState(
        site_key=site_key,
        active=d.get("active"),
        queued=d.get("queued"),
        last_good=last_good_from_record(d.get("lastGood")),
        quarantined=tuple(
            Quarantine(q["version"], q["releaseId"], q["reason"], parse_iso(q["at"]), q.get("rule", ""))  # type: ignore[arg-type]
            for q in d.get("quarantined") or []
        ),
    )


def audit_to_record(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "message": entry.message,
        "phaseFrom": entry.phase_from.value,
        "phaseTo": entry.phase_to.value,
        "weight": entry.weight,
        "details": entry.details,
    }


def audit_from_record(d: dict[str, Any]) -> AuditEntry:
    at = parse_iso(d["at"])
    assert at is not None
    return AuditEntry(
        at=at,
        actor=d["actor"],
        action=d["action"],
        message=d["message"],
        phase_from=Phase(d["phaseFrom"]),
        phase_to=Phase(d["phaseTo"]),
        weight=float(d["weight"]),
        details=d.get("details") or {},
    )


def _alert_record(a: Alert) -> dict[str, Any]:
    record: dict[str, Any] = {"seq": a.seq, "severity": a.severity, "message": a.message, "at": iso(a.at)}
    if a.event != "warning":
        record["event"] = a.event
    if a.details:
        record["details"] = dict(a.details)
    if a.delivered:
        record["delivered"] = list(a.delivered)
    if a.attempts:
        record["attempts"] = a.attempts
    if a.retry_at is not None:
        record["retryAt"] = iso(a.retry_at)
    return record


def _alert_from_record(a: dict[str, Any]) -> Alert:
    """Alerts saved before notifications had only seq, severity, message and at."""
    return Alert(
        a["seq"],
        a["severity"],
        a["message"],
        parse_iso(a["at"]),  # type: ignore[arg-type]
        event=a.get("event", "warning"),
        details=a.get("details") or {},
        delivered=tuple(a.get("delivered") or ()),
        attempts=int(a.get("attempts") or 0),
        retry_at=parse_iso(a.get("retryAt")),
    )


def target_record(t: Target) -> dict[str, str]:
    """Where a release goes, as the API and the notifications show it."""
    return {"subscriptionId": t.subscription_id, "resourceGroup": t.resource_group, "site": t.site, "slot": t.slot}
