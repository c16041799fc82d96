"""The emulated cloud: sites, slots, their settings and config, swaps, request metrics, faults."""

from __future__ import annotations

import copy
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# Settings that stay with their slot on a swap unless listed otherwise (App Service's default
# sticky settings); everything else moves with the content.
ALWAYS_STICKY = frozenset({"WEBSITE_SITE_NAME", "WEBSITE_SLOT_NAME"})


@dataclass
class MetricsRecorder:
    """Requests served by one slot worker, per second: count, 5xx, summed latency."""

    buckets: dict[int, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0.0]))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, at: float, status: int, latency_ms: float) -> None:
        with self.lock:
            bucket = self.buckets[int(at)]
            bucket[0] += 1
            bucket[1] += 1 if status >= 500 else 0
            bucket[2] += latency_ms

    def totals(self, start: float, end: float) -> tuple[int, int, float]:
        """(requests, 5xx, summed latency ms) for whole seconds in [start, end)."""
        with self.lock:
            requests = errors = 0
            latency = 0.0
            for second, (count, bad, summed) in self.buckets.items():
                if start <= second < end:
                    requests += int(count)
                    errors += int(bad)
                    latency += summed
            return requests, errors, latency


@dataclass
class Slot:
    name: str  # "production" for the production slot
    settings: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    ready_at: float = 0.0
    restarts: int = 0
    metrics: MetricsRecorder = field(default_factory=MetricsRecorder)

    def content(self) -> dict[str, Any]:
        return {"settings": self.settings, "linuxFxVersion": self.config.get("linuxFxVersion", "")}


@dataclass
class SwapOperation:
    id: str
    site_key: tuple[str, str, str]
    slot: str
    started: float
    finishes: float
    fail_with: tuple[str, str] | None = None
    status: str = "InProgress"
    ended: float | None = None


@dataclass
class Site:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    production: Slot
    slots: dict[str, Slot]
    front_door_host: str = ""
    sticky_settings: set[str] = field(default_factory=set)
    last_swap: dict[str, Any] | None = None
    # Visitor requests on the production host name, by the release (RELEASE_ID) that served them.
    visits_by_release: Counter[str] = field(default_factory=Counter)

    def slot(self, name: str) -> Slot | None:
        if name.lower() == "production":
            return self.production
        return next((s for key, s in self.slots.items() if key.lower() == name.lower()), None)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subscription_id.lower(), self.resource_group.lower(), self.name.lower())


@dataclass
class Fault:
    """Answer matching ARM requests with ``status`` (and/or a delay) ``times`` times."""

    method: str | None
    path_contains: str
    status: int | None = None
    code: str = "InjectedFault"
    message: str = "injected by the emulator"
    delay_seconds: float = 0.0
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path_contains.lower() in path.lower()


class Cloud:
    """Everything the emulator knows, behind one lock."""

    def __init__(self, *, swap_seconds: float, startup_seconds: float, seed: int | None):
        self.lock = threading.RLock()
        self.sites: dict[tuple[str, str, str], Site] = {}
        self.operations: dict[str, SwapOperation] = {}
        self.faults: list[Fault] = []
        self.swap_seconds = swap_seconds
        self.startup_seconds = startup_seconds
        self.rng = random.Random(seed)
        self.fail_next_swap: tuple[str, str] | None = None
        self.swaps_started = 0
        self.arm_requests: list[tuple[str, str]] = []

    # -- lookups -----------------------------------------------------------------------------

    def site(self, subscription: str, resource_group: str, name: str) -> Site | None:
        return self.sites.get((subscription.lower(), resource_group.lower(), name.lower()))

    def add_site(self, site: Site) -> None:
        with self.lock:
            self.sites[site.key] = site

    # -- faults ------------------------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    return copy.copy(fault)
            return None

    # -- slot lifecycle ----------------------------------------------------------------------

    def restart(self, slot: Slot) -> None:
        with self.lock:
            slot.restarts += 1
            slot.ready_at = time.monotonic() + self.startup_seconds

    def begin_swap(self, site: Site, slot_name: str) -> SwapOperation | str:
        """Start a swap of ``slot_name`` with production; a message when one is already running."""
        with self.lock:
            self.advance()
            running = [op for op in self.operations.values() if op.site_key == site.key and op.status == "InProgress"]
            if running:
                return (
                    f"Cannot modify this site because another operation is in progress. "
                    f"Details: Id: {running[0].id}, OperationName: SwapSiteSlots"
                )
            now = time.monotonic()
            op = SwapOperation(
                id=str(uuid.uuid4()),
                site_key=site.key,
                slot=slot_name,
                started=now,
                finishes=now + self.swap_seconds,
                fail_with=self.fail_next_swap,
            )
            self.fail_next_swap = None
            self.operations[op.id] = op
            self.swaps_started += 1
            self.advance()
            return op

    def advance(self) -> None:
        """Finish every swap whose time has come (lazily, on any request)."""
        with self.lock:
            now = time.monotonic()
            for op in self.operations.values():
                if op.status == "InProgress" and now >= op.finishes:
                    site = self.sites[op.site_key]
                    if op.fail_with:
                        op.status = "Failed"
                    else:
                        self._swap_content(site, op.slot)
                        op.status = "Succeeded"
                        site.last_swap = {
                            "timestampUtc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "sourceSlotName": op.slot,
                            "destinationSlotName": "production",
                        }
                    op.ended = now

    def _swap_content(self, site: Site, slot_name: str) -> None:
        slot = site.slot(slot_name)
        assert slot is not None
        production = site.production
        sticky = ALWAYS_STICKY | site.sticky_settings

        def split(settings: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
            stays = {k: v for k, v in settings.items() if k in sticky}
            moves = {k: v for k, v in settings.items() if k not in sticky}
            return stays, moves

        slot_stays, slot_moves = split(slot.settings)
        prod_stays, prod_moves = split(production.settings)
        slot.settings = {**slot_stays, **prod_moves}
        production.settings = {**prod_stays, **slot_moves}
        slot_fx, prod_fx = slot.config.get("linuxFxVersion", ""), production.config.get("linuxFxVersion", "")
        slot.config["linuxFxVersion"], production.config["linuxFxVersion"] = prod_fx, slot_fx
        # Routing rules are not swapped. App Service warms the slot up before it switches, so
        # neither side goes through a cold start.

    # -- routing -----------------------------------------------------------------------------

    def route(self, site: Site, cookie: str | None) -> tuple[Slot, str | None]:
        """Pick the slot a production request goes to; returns it and the routing cookie to set."""
        with self.lock:
            if cookie:
                if cookie == "self":
                    return site.production, None
                pinned = site.slot(cookie)
                if pinned is not None:
                    return pinned, None
            rules = site.production.config.get("experiments", {}).get("rampUpRules") or []
            draw = self.rng.random() * 100
            cumulative = 0.0
            for rule in rules:
                cumulative += float(rule.get("reroutePercentage") or 0)
                if draw < cumulative:
                    target = next((s for s in site.slots.values() if s.host == rule.get("actionHostName")), None)
                    if target is not None:
                        return target, target.name
            return site.production, "self" if rules else None
