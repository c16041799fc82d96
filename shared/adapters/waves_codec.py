"""A rollout as stored: one JSON document (its sites' plans, their runs and its log)."""

from __future__ import annotations

from typing import Any

from shared.adapters.codec import (
    actor_from_record,
    actor_to_record,
    iso,
    parse_iso,
    policy_from_record,
    policy_to_record,
    spec_from_record,
    spec_to_record,
)
from shared.domain.waves import FleetSite, LogEntry, Rollout, RolloutSpec, SiteRun, Wave


def rollout_to_record(r: Rollout) -> dict[str, Any]:
    spec = r.spec
    return {
        "rolloutId": spec.rollout_id,
        "version": spec.version,
        "onFailure": spec.on_failure,
        "fingerprint": spec.fingerprint,
        "sites": [
            {"site": s.site, "region": s.region, "spec": spec_to_record(s.spec), "policy": policy_to_record(s.policy)}
            for s in spec.sites
        ],
        "waves": [{"sites": list(w.sites), "maxInFlight": w.max_in_flight, "bake": w.bake_seconds} for w in spec.waves],
        "createdAt": iso(r.created_at),
        "phase": r.phase,
        "wave": r.wave,
        "bakeUntil": iso(r.bake_until),
        "reason": r.reason,
        "updatedAt": iso(r.updated_at),
        "finishedAt": iso(r.finished_at),
        "nextCheckAt": iso(r.next_check_at),
        "runs": [
            {
                "site": x.site,
                "releaseId": x.release_id,
                "wave": x.wave,
                "state": x.state,
                "outcome": x.outcome,
                "previous": x.previous,
                "revertId": x.revert_id,
            }
            for x in r.runs
        ],
        "log": [
            {"at": iso(e.at), "actor": e.actor, "action": e.action, "message": e.message, "details": dict(e.details)}
            for e in r.log
        ],
        "submitters": [actor_to_record(a) for a in r.submitters],
    }


def rollout_from_record(d: dict[str, Any]) -> Rollout:
    spec = RolloutSpec(
        rollout_id=d["rolloutId"],
        version=d["version"],
        sites=tuple(
            FleetSite(s["site"], s.get("region"), spec_from_record(s["spec"]), policy_from_record(s.get("policy")))
            for s in d["sites"]
        ),
        waves=tuple(Wave(tuple(w["sites"]), int(w["maxInFlight"]), int(w["bake"])) for w in d["waves"]),
        on_failure=d.get("onFailure", "keep"),
        fingerprint=d.get("fingerprint", ""),
    )
    return Rollout(
        spec=spec,
        created_at=parse_iso(d["createdAt"]),  # type: ignore[arg-type]
        runs=tuple(
            SiteRun(
                x["site"],
                x["releaseId"],
                int(x["wave"]),
                x["state"],
                x.get("outcome"),
                x.get("previous"),
                x.get("revertId"),
            )
            for x in d["runs"]
        ),
        phase=d["phase"],
        wave=int(d["wave"]),
        bake_until=parse_iso(d.get("bakeUntil")),
        reason=d.get("reason"),
        updated_at=parse_iso(d.get("updatedAt")),
        finished_at=parse_iso(d.get("finishedAt")),
        next_check_at=parse_iso(d.get("nextCheckAt")),
        log=tuple(
            LogEntry(parse_iso(e["at"]), e["actor"], e["action"], e["message"], e.get("details") or {})  # type: ignore[arg-type]
            for e in d.get("log", [])
        ),
        submitters=tuple(actor_from_record(a) for a in d.get("submitters", [])),
    )
