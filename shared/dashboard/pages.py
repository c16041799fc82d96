"""The dashboard's pages: what each shows, gathered from the same views as the JSON API and
rendered by the Jinja2 templates beside this module (autoescaped: nothing stored is trusted)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from shared.api import audit_view, release_view, stats_view
from shared.dashboard.chart import share_of, timeline
from shared.dashboard.forms import Button
from shared.domain.ledger import SiteLedger
from shared.domain.model import Actor, Phase, Release, SiteState
from shared.ports import ReleaseSummary, StoredAudit, StoredMeasurement

REFRESH_SECONDS = 15
RECENT_PER_SITE = 5
# Audit actions shown as gates and approvals: who let the release through, and when.
FINAL_LABELS = {Phase.SUCCEEDED: "succeeded", Phase.ROLLED_BACK: "rolled back", Phase.FAILED: "failed"}
GATE_ACTIONS = ("gate.", "approval.", "override.", "policy.applied")


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def nonce() -> str:
    return secrets.token_urlsafe(16)


def content_security_policy(script_nonce: str) -> str:
    return (
        f"default-src 'none'; style-src 'nonce-{script_nonce}'; script-src 'nonce-{script_nonce}'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def render(template: str, **context: Any) -> str:
    return str(_environment().get_template(template).render(**context))


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}Z" if value else ""


def index(
    summaries: Sequence[ReleaseSummary],
    sites: list[SiteLedger],
    viewer: Actor,
    *,
    script_nonce: str,
    now: datetime,
    rollouts: Sequence[Any] = (),
) -> str:
    """Every site with its active, queued and recent releases, and the ledger of bad releases
    stopped early."""
    by_site: dict[str, dict[str, Any]] = {}
    for s in summaries:
        entry = by_site.setdefault(
            s.site_key, {"name": s.site, "resourceGroup": s.resource_group, "active": [], "queued": [], "recent": []}
        )
        row = {
            "id": s.release_id,
            "version": s.version,
            "phase": s.phase.value,
            "paused": s.paused,
            "weight": s.weight,
            "updated": _when(s.updated_at or s.created_at),
            "sort": s.updated_at or s.created_at,
        }
        if s.phase is Phase.PENDING:
            entry["queued"].append(row)
        elif s.phase.is_final:
            entry["recent"].append(row)
        else:
            entry["active"].append(row)
    for entry in by_site.values():
        for kind in ("active", "queued", "recent"):
            entry[kind].sort(key=lambda r: r["sort"], reverse=True)
        entry["recent"] = entry["recent"][:RECENT_PER_SITE]
    running = any(entry["active"] or entry["queued"] for entry in by_site.values())
    running = running or any(not r.is_final for r in rollouts)
    fleet = [
        {
            "id": r.id,
            "version": r.spec.version,
            "phase": r.phase,
            "wave": f"{r.wave + 1}/{len(r.spec.waves)}",
            "sites": ", ".join(f"{run.site} {run.state}" for run in r.runs),
            "updated": _when(r.updated_at or r.created_at),
        }
        for r in rollouts
    ]
    return render(
        "index.html",
        title="Releases",
        viewer=viewer,
        nonce=script_nonce,
        refresh=REFRESH_SECONDS if running else None,
        now=_when(now),
        sites=sorted(by_site.values(), key=lambda e: (e["name"], e["resourceGroup"])),
        stats=stats_view(sites),
        rollouts=fleet,
    )


def _measurement_row(m: StoredMeasurement) -> dict[str, Any]:
    record = m.record
    numbers = record.get("numbers") if isinstance(record.get("numbers"), dict) else {}
    return {
        "seq": m.seq,
        "at": str(record.get("at", ""))[11:19] + "Z",
        "phase": record.get("phase"),
        "step": record.get("step"),
        "share": share_of(record),
        "provider": numbers.get("provider"),
        "statistic": numbers.get("latencyStatistic"),
        "canary": {
            "requests": numbers.get("canaryRequests"),
            "errors": numbers.get("canaryErrors"),
            "rate": numbers.get("canaryErrorRate"),
            "lower": numbers.get("canaryErrorRateLowerBound"),
            "latency": numbers.get("canaryLatencyMs"),
        },
        "stable": {
            "requests": numbers.get("stableRequests"),
            "errors": numbers.get("stableErrors"),
            "rate": numbers.get("stableErrorRate"),
            "latency": numbers.get("stableLatencyMs"),
        },
        "limits": {
            "minRequests": numbers.get("minRequests"),
            "maxErrorRate": numbers.get("maxErrorRate"),
            "maxErrorRateIncrease": numbers.get("maxErrorRateIncrease"),
            "maxLatencyMs": numbers.get("maxLatencyMs"),
        },
        "verdict": record.get("verdict"),
        "why": record.get("why") or [],
    }


def release(
    r: Release,
    site: SiteState | None,
    audit: Sequence[StoredAudit],
    measurements: Sequence[StoredMeasurement],
    viewer: Actor,
    buttons: Sequence[Button],
    *,
    form_token: str,
    script_nonce: str,
    now: datetime,
    notice: str | None = None,
) -> str:
    """One release: where it is and why, its timeline, every measurement and who let it through."""
    view = release_view(r, site)
    oldest_first = list(reversed(measurements))
    marks: list[tuple[datetime, str]] = []
    if r.finished_at and r.phase.is_final:
        marks.append((r.finished_at, FINAL_LABELS.get(r.phase, r.phase.value)))
    chart = timeline([m.record for m in oldest_first], marks) if oldest_first else None
    entries = [audit_view(e) for e in audit]
    return render(
        "release.html",
        title=f"{r.id}",
        viewer=viewer,
        nonce=script_nonce,
        refresh=None if r.phase.is_final else REFRESH_SECONDS,
        now=_when(now),
        r=view,
        chart=chart,
        total=r.measured_seq,
        verdicts=dict(r.verdicts),
        measurements=[_measurement_row(m) for m in measurements],
        phases=[e for e in entries if e["phaseFrom"] != e["phaseTo"]],
        gates=[e for e in entries if str(e["action"]).startswith(GATE_ACTIONS)],
        audit=list(reversed(entries)),
        buttons=list(buttons),
        form_token=form_token,
        notice=notice,
    )


def problem(status: int, title: str, detail: str, viewer: Actor | None, *, script_nonce: str) -> str:
    return render(
        "problem.html", title=title, status=status, detail=detail, viewer=viewer, nonce=script_nonce, refresh=None
    )


def rollout(view: dict[str, Any], viewer: Actor, *, script_nonce: str, now: datetime, final: bool) -> str:
    """One rollout: its waves, every site's state and its release's own status, and its log."""
    return render(
        "rollout.html",
        title=view["rolloutId"],
        viewer=viewer,
        nonce=script_nonce,
        refresh=None if final else REFRESH_SECONDS,
        now=_when(now),
        r=view,
        log=list(reversed(view["log"])),
    )
