"""What releasectl prints for people: one screen per release, tables for lists. ``--output json``
prints the controller's own documents instead."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PHASE_STYLE = {
    "succeeded": "bold green",
    "rolledBack": "bold yellow",
    "failed": "bold red",
    "cancelled": "dim",
    "rollingBack": "yellow",
    "awaitingApproval": "magenta",
}
SERVES_ALL = {"guarding", "succeeded"}  # swapped in: production is the new version


def new_share(view: dict[str, Any]) -> int:
    """The share of visitors the new version serves, in percent (the routing weight until the swap),
    as the controller reports it; worked out from the phase for a controller that does not."""
    traffic = view.get("traffic") or {}
    if traffic.get("newVersionPercent") is not None:
        return int(traffic["newVersionPercent"])
    return 100 if view.get("phase") in SERVES_ALL else int(view.get("weight") or 0)


def headline(view: dict[str, Any]) -> str:
    t = view.get("target") or {}
    step = view.get("step")
    at = f", step {step['index']}/{step['of']}" if step else ""
    paused = " (paused)" if view.get("paused") else ""
    return f"{view.get('releaseId')} {view.get('version')} on {t.get('site')}: {view.get('phase')}{paused}{at}"


def evidence_lines(view: dict[str, Any]) -> list[str]:
    lines = []
    for e in (view.get("analysis") or {}).get("evidence") or []:
        c, s = e.get("canary") or {}, e.get("stable") or {}

        def side(name: str, m: dict[str, Any], statistic: str = str(e.get("latencyStatistic"))) -> str:
            latency = f", {m['latencyMs']:.0f} ms {statistic}" if m.get("latencyMs") is not None else ""
            return f"{name} {m.get('errors', 0)}/{m.get('requests', 0)} errors{latency}"

        lines.append(f"{e.get('provider')}: {side('new', c)}; {side('stable', s)}")
    return lines


def now_doing(view: dict[str, Any]) -> str:
    """The release's status in plain words (what it waits for, until when), if the API gave one."""
    return str((view.get("status") or {}).get("summary") or view.get("phaseMeaning") or "")


def status_text(view: dict[str, Any]) -> str:
    lines = [headline(view), f"  {now_doing(view)}", f"  traffic: new {new_share(view)} %"]
    if view.get("reason"):
        lines.append(f"  reason: {view['reason']}")
    lines += [f"  {line}" for line in evidence_lines(view)]
    return "\n".join(lines)


def audit_text(entries: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{e.get('seq'):>4} {e.get('at')} {e.get('actor')}: {e.get('action')} — {e.get('message')}" for e in entries
    )


def releases_text(page: dict[str, Any]) -> str:
    rows = [
        f"{r.get('releaseId'):<40} {r.get('version'):<14} {(r.get('target') or {}).get('site'):<24} "
        f"{r.get('phase'):<16} {r.get('weight'):>3} %"
        for r in page.get("items") or []
    ]
    more = f"\n(more: --cursor {page['cursor']})" if page.get("cursor") else ""
    return "\n".join(rows) + more if rows else "no releases" + more


def rejections_text(page: dict[str, Any]) -> str:
    rows = [
        f"{r.get('receivedAt')} {r.get('source'):<10} {r.get('messageId') or '-'}: {r.get('reason')}"
        for r in page.get("items") or []
    ]
    return "\n".join(rows) if rows else f"no events refused on {page.get('day')}"


def live_view(view: dict[str, Any], audit: list[dict[str, Any]]) -> Panel:
    """The live screen of ``watch``: phase, step, a weight bar, the split, the numbers, the audit."""
    share = new_share(view)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(Text("new", style="bold"), ProgressBar(total=100, completed=share, width=40), Text(f"{share:>3} %"))
    bar.add_row(Text("stable"), ProgressBar(total=100, completed=100 - share, width=40), Text(f"{100 - share:>3} %"))
    parts: list[Any] = [
        Text(headline(view), style=PHASE_STYLE.get(str(view.get("phase")), "bold")),
        Text(now_doing(view)),
        Text(str(view.get("phaseMeaning") or ""), style="dim"),
        bar,
    ]
    if view.get("reason"):
        parts.append(Text(f"reason: {view['reason']}"))
    parts += [Text(line) for line in evidence_lines(view)]
    if audit:
        parts.append(Text(audit_text(audit[-6:]), style="dim"))
    return Panel(Group(*parts), title="releasectl watch", border_style="blue")
