"""The emulated cloud: sites, slots, their settings and config, swaps, request metrics, faults.

Everything that takes time in Azure takes time here, on one clock: real time by default, or a
clock the tests share with the controller, so a three-minute swap or metric delay costs nothing
real. The defaults are Azure's documented behaviour (see ``Timings``), not a kinder one.
"""

from __future__ import annotations

import copy
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Settings that stay with their slot on a swap whatever the site says (App Service's own).
ALWAYS_STICKY = frozenset({"WEBSITE_SITE_NAME", "WEBSITE_SLOT_NAME"})
WARMUP_PATH = "WEBSITE_SWAP_WARMUP_PING_PATH"
WARMUP_STATUSES = "WEBSITE_SWAP_WARMUP_PING_STATUSES"


@dataclass(frozen=True)
class Timings:
    """How long things take. The defaults follow Azure: swaps take from 30 s to minutes, an app
    restarted by a settings change takes tens of seconds to answer, platform metrics arrive in
    one-minute buckets with the newest minutes missing."""

    swap_seconds: float = 90.0
    startup_seconds: float = 30.0
    metrics_delay_seconds: float = 180.0
    # A warm-up request waits this long for the slot to answer (Azure: 90 s, retried up to 5 times).
    warmup_timeout_seconds: float = 450.0
    # Real seconds each ARM request takes before it is answered, drawn uniformly from this range
    # (off by default, so the tests stay quick; the scale-out benchmark uses Azure's 0.1-0.3 s).
    arm_latency_seconds: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def fast(cls) -> Timings:
        """For tests on the real clock that are not about timing: everything nearly instant."""
        return cls(swap_seconds=0.3, startup_seconds=0.05, metrics_delay_seconds=0.0, warmup_timeout_seconds=5.0)


@dataclass
class MetricsRecorder:
    """Requests served by one slot's app, per second of the cloud's clock: count, 5xx, latency."""

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
    fail_with: tuple[int, str, str] | None = None  # status, code, message
    status: str = "InProgress"
    ended: float | None = None


# The content of a slot that moves with a swap (besides the non-sticky settings).
SWAPPED_CONFIG = ("linuxFxVersion", "windowsFxVersion")


@dataclass
class Site:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    production: Slot
    slots: dict[str, Slot]
    kind: str = "app,linux,container"
    front_door_host: str = ""
    sticky_settings: set[str] = field(default_factory=set)
    sticky_connection_strings: set[str] = field(default_factory=set)
    last_swap: dict[str, Any] | None = None
    # A management lock: every write answers 409 ScopeLocked.
    locked: bool = False
    # Visitor requests on the production host name, by the release (RELEASE_ID) that served them.
    visits_by_release: Counter[str] = field(default_factory=Counter)
    # A fault of this region only: a version that fails this share of its requests here (a build
    # that breaks on this region's dependencies), by version.
    failing_versions: dict[str, float] = field(default_factory=dict)

    def slot(self, name: str) -> Slot | None:
        if name.lower() == "production":
            return self.production
        return next((s for key, s in self.slots.items() if key.lower() == name.lower()), None)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subscription_id.lower(), self.resource_group.lower(), self.name.lower())

    def has_rule_for(self, slot: Slot) -> bool:
        rules = self.production.config.get("experiments", {}).get("rampUpRules") or []
        return any((rule.get("actionHostName") or "").lower() == slot.host.lower() for rule in rules)


@dataclass
class Fault:
    """Answer matching ARM requests with ``status`` (and/or a delay) ``times`` times. ``shape`` is
    the error body: ARM's ``{"error": {"code", "message"}}`` or App Service's own
    ``{"Code", "Message", "Details"}``; ``retry_after`` adds a Retry-After header."""

    method: str | None
    path_contains: str
    status: int | None = None
    code: str = "InjectedFault"
    message: str = "injected by the emulator"
    delay_seconds: float = 0.0
    times: int = 1
    shape: str = "arm"
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path_contains.lower() in path.lower()


class Cloud:
    """Everything the emulator knows, behind one lock."""

    def __init__(self, *, timings: Timings, seed: int | None, clock: Callable[[], float] | None = None):
        self.lock = threading.RLock()
        self.sites: dict[tuple[str, str, str], Site] = {}
        self.operations: dict[str, SwapOperation] = {}
        self.faults: list[Fault] = []
        self.timings = timings
        self.clock = clock or time.time
        self.rng = random.Random(seed)
        self.fail_next_swap: tuple[int, str, str] | None = None
        self.swaps_started = 0
        self.arm_requests: list[tuple[str, str]] = []
        self.warmups: list[tuple[str, str, int | None]] = []  # (site, path, status or None)
        # Set by the data plane: how a slot's app answers one request (used by the swap warm-up).
        self.serve: Callable[[Site, Slot, str], int | None] | None = None

    def now(self) -> float:
        return self.clock()

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
        """The app restarts (a settings write, a stack change, a restart call): while it starts,
        the front end answers 503 for it."""
        with self.lock:
            slot.restarts += 1
            slot.ready_at = self.now() + self.timings.startup_seconds

    def ready(self, slot: Slot) -> bool:
        return self.now() >= slot.ready_at

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
            now = self.now()
            op = SwapOperation(
                id=str(uuid.uuid4()),
                site_key=site.key,
                slot=slot_name,
                started=now,
                finishes=now + self.timings.swap_seconds,
                fail_with=self.fail_next_swap,
            )
            self.fail_next_swap = None
            self.operations[op.id] = op
            self.swaps_started += 1
            self.advance()
            return op

    def advance(self) -> None:
        """Finish every swap whose time has come (lazily, on any request): warm the source slot up,
        then exchange the content, or fail."""
        with self.lock:
            now = self.now()
            for op in self.operations.values():
                if op.status != "InProgress" or now < op.finishes:
                    continue
                site = self.sites[op.site_key]
                source = site.slot(op.slot)
                assert source is not None
                deadline = op.started + self.timings.warmup_timeout_seconds
                if op.fail_with is None and not self.ready(source) and source.ready_at <= deadline:
                    op.finishes = source.ready_at  # the warm-up waits for the app to start
                    continue
                failure = op.fail_with or self._warm_up(site, source)
                if failure:
                    op.fail_with = failure
                    op.status = "Failed"
                else:
                    self._swap_content(site, op.slot)
                    op.status = "Succeeded"
                    site.last_swap = {
                        "timestampUtc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                        "sourceSlotName": op.slot,
                        "destinationSlotName": "production",
                    }
                op.ended = now

    def _warm_up(self, site: Site, slot: Slot) -> tuple[int, str, str] | None:
        """App Service requests the source slot's warm-up path before it switches. It fails the
        swap when the slot never answers, or answers a status not in the listed ones (all statuses
        count as warm unless WEBSITE_SWAP_WARMUP_PING_STATUSES says otherwise)."""
        path = slot.settings.get(WARMUP_PATH) or "/"
        allowed = {s.strip() for s in (slot.settings.get(WARMUP_STATUSES) or "").split(",") if s.strip()}
        status = self.serve(site, slot, path) if self.serve is not None else None
        self.warmups.append((site.name, path, status))
        if status is None:
            return (
                417,
                "ExpectationFailed",
                f"Cannot swap site slot '{slot.name}' because the site warm-up request to '{path}' did not complete "
                f"within {self.timings.warmup_timeout_seconds:g} seconds.",
            )
        if allowed and str(status) not in allowed:
            return (
                417,
                "ExpectationFailed",
                f"Cannot swap site slot '{slot.name}' because the warm-up request to '{path}' returned HTTP "
                f"{status}, which is not one of {WARMUP_STATUSES} ({', '.join(sorted(allowed))}).",
            )
        return None

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
        for key in SWAPPED_CONFIG:
            slot_value, prod_value = slot.config.get(key), production.config.get(key)
            for target, value in ((slot, prod_value), (production, slot_value)):
                if value is None:
                    target.config.pop(key, None)
                else:
                    target.config[key] = value
        # Routing rules are not swapped. Both sides were warm: neither goes through a cold start.

    # -- routing -----------------------------------------------------------------------------

    def route(self, site: Site, cookie: str | None) -> tuple[Slot, str | None]:
        """Pick the slot a production request goes to; returns it and the routing cookie to set.

        A visitor pinned to a slot by the ``x-ms-routing-name`` cookie reaches it only while a
        routing rule for that slot exists (a 0 % rule is enough); otherwise production serves it.
        """
        with self.lock:
            if cookie:
                if cookie == "self":
                    return site.production, None
                pinned = site.slot(cookie)
                if pinned is not None and pinned is not site.production and site.has_rule_for(pinned):
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
