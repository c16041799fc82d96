"""A world to break the controller in: the real service over a real store (in memory or Table
Storage on Azurite), the in-memory App Service model, and fault injection at every port.

Faults it can inject:
- platform calls that fail transiently (with an HTTP status, or with no answer after doing the
  work), terminally, or all at once for a while (a token outage), and swaps that fail on the
  platform;
- a worker that dies (``Crash``, which nothing in the service catches) after a platform call,
  before a save or after a save;
- storage that is unavailable for a call, or restarts (Azurite);
- another actor (a second reconciler, a person, the next build) that acts in the middle of an
  operation: right before a platform call changes something, or right before a save;
- a notifier that fails;
- the clock jumping.

``check()`` asserts every invariant of DESIGN.md that a single moment can show; ``calm()`` heals
the world, lets people do what they would, and checks that every release reaches a final phase.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.memory import (
    FakeClock,
    InMemorySlotPlatform,
    ScriptedAnalyzer,
    ScriptedValidator,
)
from shared.domain import lifecycle
from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import (
    Measurement,
    OverrideKind,
    Phase,
    ProviderKind,
    Release,
    Target,
    VersionStats,
)
from shared.domain.schema import parse_release_event, spec_fingerprint
from shared.ports import (
    ReleaseIdConflict,
    ReleaseNotFound,
    StoreUnavailable,
    TerminalPlatformError,
    TransientPlatformError,
)
from shared.service import ReleaseService, TooManyConflicts
from tests.builders import SUBSCRIPTION, authority_for_tests, ingest, person, signed

MUTATING = ("deploy", "set_weight", "begin_swap", "restore_staging")
OPERATIONS = ("observe", *MUTATING)
SITES = ("contoso-web", "contoso-api")
INITIAL = "initial"


class Crash(BaseException):
    """The worker died here. A BaseException, so no ``except Exception`` in the code can hide it."""


# Outcomes the callers of the service may see and must handle; anything else is a bug.
EXPECTED = (StoreUnavailable, TooManyConflicts)


def target(site: str) -> Target:
    return Target(SUBSCRIPTION, f"rg-{site}", site)


# ---------------------------------------------------------------------------------------------
# Release events
# ---------------------------------------------------------------------------------------------

VARIANTS: dict[str, dict[str, Any]] = {
    "canary": {"strategy": {"type": "canary", "steps": [{"weight": 10, "bake": "1m"}, {"weight": 50, "bake": "2m"}]}},
    "canary-manual": {
        "promotion": "manual",
        "strategy": {"type": "canary", "steps": [{"weight": 20, "bake": "1m"}]},
    },
    "canary-approved": {
        "approveBeforeTraffic": True,
        "strategy": {"type": "canary", "steps": [{"weight": 25, "bake": "1m"}]},
    },
    "blue-green": {"strategy": {"type": "blueGreen", "guard": "2m"}},
    "blue-green-manual": {"promotion": "manual", "strategy": {"type": "blueGreen", "guard": "1m"}},
}


def release_event(site: str, version: int, variant: str, *, changed: bool = False) -> dict[str, Any]:
    t = target(site)
    doc: dict[str, Any] = {
        "releaseId": f"{site}-{version}",
        "target": {"subscriptionId": t.subscription_id, "resourceGroup": t.resource_group, "site": t.site},
        "version": f"{version}.0.0" if not changed else f"{version}.0.1",
        "artifact": {"container": f"contoso.azurecr.io/{site}:{version}"},
        "appSettings": {"BUILD": str(version)},
        "validation": {"checks": [{"path": "/healthz"}], "consecutiveSuccesses": 1, "failureLimit": 2},
        "analysis": {"minRequests": 20, "maxBakeExtension": "3m"},
    }
    doc.update(json.loads(json.dumps(VARIANTS[variant])))
    return doc


def body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


# ---------------------------------------------------------------------------------------------
# Ports with faults
# ---------------------------------------------------------------------------------------------


@dataclass
class Fault:
    operation: str  # an operation name, or "*"
    kind: str  # transient | no-answer | terminal | crash-after


class FaultyPlatform:
    """The in-memory App Service model behind a layer that injects faults and checks every swap."""

    def __init__(self, world: World):
        self.world = world
        self.model = InMemorySlotPlatform(auto_create=False, clock=world.clock)
        self.faults: list[Fault] = []
        self.token_outage = 0  # this many calls fail as if the managed identity were gone
        self.before_change: Callable[[], None] | None = None
        self.swaps: list[tuple[str, str | None, str | None]] = []  # (site key, into production, out of it)

    def heal(self) -> None:
        self.faults.clear()
        self.token_outage = 0
        self.before_change = None
        self.model.fail_next_swap_with = None

    def _call(self, operation: str, work: Callable[[], Any]) -> Any:
        if self.token_outage > 0:
            self.token_outage -= 1
            raise TransientPlatformError(
                f"{operation}: could not get a token for ARM: the managed identity was not found", status=None
            )
        fault = next((f for f in self.faults if f.operation in (operation, "*")), None)
        if fault is not None:
            self.faults.remove(fault)
        if operation in MUTATING and self.before_change is not None:
            hook, self.before_change = self.before_change, None
            hook()  # someone else acts between this caller's decision and its platform call
        if fault is not None and fault.kind == "transient":
            raise TransientPlatformError(f"{operation}: ARM answered 503", status=503)
        if fault is not None and fault.kind == "terminal":
            raise TerminalPlatformError(f"{operation}: ARM refused (403 AuthorizationFailed)", status=403)
        result = work()
        if fault is not None and fault.kind == "no-answer":
            raise TransientPlatformError(f"{operation}: ARM did not answer in time", status=None)
        if fault is not None and fault.kind == "crash-after":
            raise Crash(f"worker died after {operation}")
        return result

    def observe(self, target: Target, **kw: Any) -> Any:
        return self._call("observe", lambda: self.model.observe(target, **kw))

    def deploy(self, target: Target, **kw: Any) -> None:
        self._call("deploy", lambda: self.model.deploy(target, **kw))

    def set_weight(self, target: Target, weight: float) -> None:
        self._call("set_weight", lambda: self.model.set_weight(target, weight))

    def restore_staging(self, target: Target, last_good: Any) -> None:
        self._call("restore_staging", lambda: self.model.restore_staging(target, last_good))

    def begin_swap(self, target: Target) -> str:
        def start() -> str:
            site = self.model.sites[target.site_key]
            into = site.slots[target.slot].settings.get("RELEASE_ID")
            out = site.production.settings.get("RELEASE_ID")
            token = self.model.begin_swap(target)  # raises 409 while another swap runs
            self.swaps.append((target.site_key, into, out))
            self.world.check_swap(target, into, out)
            return token

        return self._call("begin_swap", start)


class FaultyStore:
    """A store that can be unavailable, lose a worker around a save, or let someone else write first."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.unavailable_calls = 0
        self.crash_before_commit = False
        self.crash_after_commit = False
        self.before_commit: Callable[[], None] | None = None

    def heal(self) -> None:
        self.unavailable_calls = 0
        self.crash_before_commit = self.crash_after_commit = False
        self.before_commit = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.unavailable_calls > 0:
                self.unavailable_calls -= 1
                raise StoreUnavailable(f"{name}: storage answered 503 (injected)")
            return attr(*args, **kwargs)

        return call

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        if self.before_commit is not None:
            hook, self.before_commit = self.before_commit, None
            hook()  # another writer commits between this caller's read and its write
        if self.crash_before_commit:
            self.crash_before_commit = False
            raise Crash("worker died before saving")
        if self.unavailable_calls > 0:
            self.unavailable_calls -= 1
            raise StoreUnavailable("commit: storage answered 503 (injected)")
        result = self.inner.commit(*args, **kwargs)
        if self.crash_after_commit:
            self.crash_after_commit = False
            raise Crash("worker died right after saving")
        return result


class FlakyNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.failures = 0

    def notify(self, release: Release, severity: str, message: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the alert channel did not answer (injected)")
        self.sent.append((release.id, severity, message))


def _measurements(mode: str) -> Callable[[Release, Any], tuple[Measurement, ...]]:
    canary = {
        "good": VersionStats(400, 0, 20.0),
        "bad": VersionStats(400, 120, 20.0),
        "quiet": VersionStats(2, 0, 20.0),
        "none": VersionStats(0, 0, None),
    }[mode]
    stable = VersionStats(4000, 4, 20.0)
    return lambda release, now: (Measurement(ProviderKind.HTTP, canary, stable),)


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------


@dataclass
class Violation:
    what: str
    detail: str


@dataclass
class World:
    raw_store: Any
    restart_storage: Callable[[], None] | None = None
    clock: FakeClock = field(default_factory=FakeClock)
    violations: list[Violation] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)
    tried: dict[str, set[bytes]] = field(default_factory=dict)
    swap_claims: set[tuple[str, str, Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.platform = FaultyPlatform(self)
        self.store = FaultyStore(self.raw_store)
        self.validator = ScriptedValidator()
        self.analyzer = ScriptedAnalyzer(_measurements("good"))
        self.notifier = FlakyNotifier()
        self.service = ReleaseService(
            self.store,
            self.platform,
            self.validator,
            self.analyzer,
            self.notifier,
            self.clock,  # type: ignore[arg-type]
            authority=authority_for_tests(),
        )
        for site in SITES:
            self.platform.model.add_site(target(site), production_release=INITIAL, version="0.0.0")

    # -- what people and CI do -------------------------------------------------------------------

    def submit(self, site: str, version: int, variant: str, *, changed: bool = False) -> str:
        """Publish a release event (again, when it was published before). Returns the outcome."""
        doc = release_event(site, version, variant, changed=changed)
        raw = body(doc)
        release_id = doc["releaseId"]
        tried = self.tried.setdefault(release_id, set())
        others_tried = bool(tried - {raw})
        tried.add(raw)
        try:
            result = ingest(self.service, raw, message_id=release_id, source="serviceBus")
        except ReleaseIdConflict:
            if not others_tried:
                self.violations.append(Violation("1", f"the only plan ever sent as {release_id} was refused"))
            return "conflict"
        if result.outcome in ("created", "duplicate"):
            # The plan the id names: what "the same event, delivered again" sends. (The first body
            # tried may have been lost to an outage before it claimed the id, and another won it.)
            self.bodies[release_id] = raw
        if result.release is not None and spec_fingerprint(result.release.spec) != spec_fingerprint(
            parse_release_event(raw)
        ):
            self.violations.append(Violation("1", f"{release_id} was answered with a different plan"))
        return result.outcome

    def redeliver(self, release_id: str) -> str | None:
        """The same event, delivered again: the plan that holds the id (None when no plan of it was
        created or found yet). A refusal is this event's violation, never the operation it
        interrupts (an interloper runs inside another caller's save or platform call)."""
        raw = self.bodies.get(release_id)
        if raw is None:
            return None
        try:
            return ingest(self.service, raw, message_id=release_id, source="serviceBus").outcome
        except ReleaseIdConflict:
            self.violations.append(Violation("1", f"{release_id}, delivered again with the plan it holds, was refused"))
            return "conflict"

    def override(self, release_id: str, kind: OverrideKind, actor: str = "pat") -> str:
        try:
            release = self.service.override(release_id, kind, actor=person(actor), reason="testing")
        except OverrideRefused as refused:
            return f"refused: {refused.reason}"
        except ReleaseNotFound:
            return "not found"
        return f"ok: {release.id}"

    def tick(self, minutes: float = 0) -> None:
        self.clock.advance(minutes * 60)
        report = self.service.reconcile_due(budget_seconds=600, concurrency=1)
        for release_id, error in report.errors:
            if not error.startswith(("StoreUnavailable", "TooManyConflicts")):
                raise AssertionError(f"reconciling {release_id} failed: {error}")
        self.service.reconcile_rollouts()

    def submit_rollout(self, version: int, variant: str) -> str:
        """A rollout of ``version`` over both sites, one wave each (published again when it was)."""
        doc = release_event(SITES[0], version, variant)
        for key in ("releaseId", "target"):
            doc.pop(key)
        doc["rolloutId"] = f"fleet-{version}"
        doc["targets"] = [
            {"subscriptionId": target(s).subscription_id, "resourceGroup": target(s).resource_group, "site": s}
            for s in SITES
        ]
        doc["waves"] = [{"sites": [SITES[0]]}, {"sites": [SITES[1]], "bake": "5m"}]
        raw = body(doc)
        result = self.service.ingest_rollout(raw, message_id=doc["rolloutId"], source="serviceBus", proof=signed(raw))
        return result.outcome

    def check_rollouts(self) -> None:
        """Rollouts: a rollout composes per-site releases wave by wave: a site of a later wave
        started only after every site of the waves before it succeeded, and each site's release is
        the rollout's version on that site."""
        for r in self.raw_store.list_rollouts():
            done = {"succeeded", "reverting", "reverted", "revertFailed", "kept"}
            for run in r.runs:
                if run.state == "waiting":
                    continue
                earlier = [x for x in r.runs if x.wave < run.wave]
                assert all(x.state in done for x in earlier), f"rollouts: {r.id} started {run.site} too soon"
                found = self.raw_store.find_release(run.release_id)
                if found is not None:
                    spec = found.value.spec
                    assert spec.version == r.spec.version and spec.target.site.lower() == run.site, (
                        f"rollouts: {run.release_id} is not {r.id}'s release on {run.site}"
                    )
            if r.phase == "succeeded":
                assert all(run.state == "succeeded" for run in r.runs), f"rollouts: {r.id} succeeded early"

    def run(self, action: Callable[[], Any]) -> Any:
        """Do something as a worker would: a crash or a storage outage ends it, nothing else may."""
        try:
            return action()
        except Crash:
            return "crashed"
        except EXPECTED as exc:
            return type(exc).__name__

    # -- faults ------------------------------------------------------------------------------------

    def metrics(self, mode: str) -> None:
        self.analyzer.script = _measurements(mode)

    def heal(self) -> None:
        self.platform.heal()
        self.store.heal()
        self.notifier.failures = 0
        self.validator.passed = True
        self.metrics("good")

    # -- looking ---------------------------------------------------------------------------------

    def release(self, release_id: str) -> Release | None:
        found = self.raw_store.find_release(release_id)
        return found.value if found is not None else None

    def releases(self) -> list[Release]:
        """Every release the store holds (including ones whose creation a crash interrupted after
        the save), and ``known`` refreshed from them."""
        out = [v.value for site in SITES for v in self.raw_store.list_site_releases(target(site).site_key)]
        out.sort(key=lambda r: r.id)
        self.known = [r.id for r in out]
        return out

    def traffic_on(self, release_id: str, site_key: str) -> float:
        site = self.platform.model.sites[site_key]
        if site.production.settings.get("RELEASE_ID") == release_id:
            return 100.0
        if site.slots["staging"].settings.get("RELEASE_ID") == release_id:
            return site.weight
        return 0.0

    def check_swap(self, t: Target, into: str | None, out: str | None) -> None:
        """Invariant 10, at the moment the platform accepts a swap: it is the swap some saved state
        claimed, moving that release in the direction it asked for."""
        claimed = []
        for release_id, purpose in ((into, "promote"), (out, "rollback")):
            r = self.release(release_id) if release_id else None
            if r is not None and r.swap is not None and r.swap.purpose == purpose and r.swap.token is None:
                claimed.append((r.id, purpose, r.swap.claimed_at))
        for claim in claimed:
            if claim in self.swap_claims:
                self.violations.append(
                    Violation("10", f"the {claim[1]} swap claimed by {claim[0]} at {claim[2]} ran twice")
                )
            self.swap_claims.add(claim)
        if not claimed:
            self.violations.append(
                Violation("10", f"a swap on {t.site} moved {into} into production and {out} out with no saved claim")
            )

    def check(self) -> None:
        """Every invariant one moment can show. Raises AssertionError naming the broken one."""
        releases = self.releases()
        by_site: dict[str, list[Release]] = {}
        for r in releases:
            by_site.setdefault(r.site_key, []).append(r)
        for site_key, group in by_site.items():
            # 3: at most one release per site is past pending and not final.
            busy = [r.id for r in group if r.phase is not Phase.PENDING and not r.is_final]
            assert len(busy) <= 1, f"invariant 3: {busy} are all in progress on {site_key}"
            for r in group:
                # 9 (and 4, 5): traffic never above what the stored phase allows.
                allowed = lifecycle.allowed_weight(r)
                traffic = self.traffic_on(r.id, site_key)
                if allowed is not None:
                    assert traffic <= allowed + 0.01, (
                        f"invariant 9: {r.id} is {r.phase} (allows {allowed}%) but gets {traffic}% "
                        f"of {site_key}'s traffic"
                    )
                if r.phase is Phase.FAILED:
                    assert r.reason, f"invariant 5: {r.id} failed without a reason"
        ids = [r.id for r in releases]
        assert len(ids) == len(set(ids)), f"invariant 1: duplicate releases {Counter(ids)}"
        # The due index never loses a release: every unsettled release is in it, at the time it
        # needs attention, and nothing else is.
        indexed = {ref.release_id: ref.due_at for ref in self.raw_store.list_active()}
        for r in releases:
            due_at = lifecycle.attention_at(r)
            assert indexed.get(r.id) == due_at, (
                f"due index: {r.id} ({r.phase}) needs attention at {due_at} but is indexed at {indexed.get(r.id)}"
            )
        assert set(indexed) <= set(ids), f"due index: entries with no release {sorted(set(indexed) - set(ids))}"
        self.check_rollouts()
        assert not self.violations, f"invariant {self.violations[0].what}: {self.violations[0].detail}"

    def check_audits(self) -> None:
        """Invariant 2: every release's audit is gapless and matches its row."""
        for r in self.releases():
            seqs = [a.seq for a in self.raw_store.list_audit(r.id)]
            assert seqs == list(range(1, len(seqs) + 1)), f"invariant 2: {r.id} audit has gaps: {seqs}"
            assert len(seqs) == r.audit_seq, f"invariant 2: {r.id} row says {r.audit_seq} entries, {len(seqs)} stored"

    # -- calm: heal everything and let it finish -------------------------------------------------

    def calm(self, rounds: int = 60) -> int:
        """Heal every fault, then tick (people approving, resuming and releasing sites as they would)
        until every release is settled. Returns the rounds it took; raises if it never settles."""
        self.heal()
        for n in range(1, rounds + 1):
            releases = self.releases()
            rollouts_done = all(r.is_final for r in self.raw_store.list_rollouts())
            if all(r.settled for r in releases) and not self.raw_store.list_active() and rollouts_done:
                return n
            for r in releases:
                if r.phase is Phase.AWAITING_APPROVAL:
                    self.override(r.id, OverrideKind.APPROVE, actor="approver")
                elif r.paused and not r.is_final:
                    self.override(r.id, OverrideKind.RESUME, actor="operator")
                elif r.phase is Phase.FAILED and r.holds_site and n > 5:
                    self.override(r.id, OverrideKind.RELEASE_SITE, actor="operator")
            self.tick(minutes=10)
            self.check()
        stuck = [(r.id, r.phase.value, r.holds_site, len(r.outbox)) for r in self.releases() if not r.settled]
        raise AssertionError(f"not settled after {rounds} calm rounds: {stuck}")

    def check_settled(self) -> None:
        """After calm(): every alert that matters was delivered, every rollback left no traffic."""
        self.check_audits()
        delivered = {(rid, message) for rid, _, message in self.notifier.sent}
        for r in self.releases():
            assert r.is_final, f"{r.id} is {r.phase}"
            if r.phase is Phase.FAILED:
                assert any(rid == r.id and "failed" in m for rid, m in delivered), f"no failed alert for {r.id}"
            if r.phase is Phase.ROLLED_BACK:
                assert any(rid == r.id and "rolled back" in m for rid, m in delivered), f"no rollback alert for {r.id}"
            if r.phase in (Phase.ROLLED_BACK, Phase.CANCELLED):
                assert self.traffic_on(r.id, r.site_key) == 0, f"{r.id} is {r.phase} but still gets traffic"
