"""The ledger of bad releases stopped: what the controller caught before it reached more than its
first step's share of users, per site and overall. Pure: it reads releases, it computes nothing
anyone stored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.domain.model import Phase, Release


def stopped_early(r: Release) -> bool:
    """Rolled back before it reached more than its first step's share: never in production, and at
    most on its first canary step (a blue-green release: before the swap)."""
    return r.phase is Phase.ROLLED_BACK and not r.reached_production and r.step <= 0


@dataclass
class SiteLedger:
    site_key: str
    site: str
    outcomes: dict[str, int] = field(default_factory=dict)
    stopped_early: list[Release] = field(default_factory=list)


def ledger(phases: Iterable[tuple[str, str, Phase]], rolled_back: Iterable[Release]) -> list[SiteLedger]:
    """Per site: releases by phase (``phases``: site key, site name, phase of each release), and the
    rolled-back ones stopped early, newest first."""
    sites: dict[str, SiteLedger] = {}
    for site_key, site, phase in phases:
        entry = sites.setdefault(site_key, SiteLedger(site_key, site))
        entry.outcomes[phase.value] = entry.outcomes.get(phase.value, 0) + 1
    for r in rolled_back:
        if stopped_early(r):
            key = r.site_key
            entry = sites.setdefault(key, SiteLedger(key, r.spec.target.site))
            entry.stopped_early.append(r)
    for entry in sites.values():
        entry.stopped_early.sort(key=lambda r: r.finished_at or r.created_at, reverse=True)
    return sorted(sites.values(), key=lambda e: e.site_key)
