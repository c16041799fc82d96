"""Invariants of the state machine, checked on random histories against a model of App Service.

Each history mixes timer ticks (with passing or failing checks, healthy, bad, quiet or missing
analysis data, and platform faults) with overrides from people, for both strategies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.memory import InMemorySlotPlatform
from shared.domain import lifecycle as machine
from shared.domain.lifecycle import OverrideRefused, apply_override, decide, override_refusal
from shared.domain.model import (
    TRANSITIONS,
    BeginSwap,
    CheckResult,
    Decision,
    DeployToSlot,
    GateResult,
    LastGood,
    Measurement,
    Observation,
    Override,
    OverrideKind,
    Phase,
    ProviderKind,
    Release,
    RestoreStaging,
    SetWeight,
    SiteState,
    VersionStats,
)
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, event, person, spec

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
OLD = "previous-release"

MEASUREMENTS = {
    "healthy": (Measurement(ProviderKind.HTTP, VersionStats(500, 0, 20.0), VersionStats(5000, 5, 20.0)),),
    "bad": (Measurement(ProviderKind.HTTP, VersionStats(500, 120, 20.0), VersionStats(5000, 5, 20.0)),),
    "slow": (Measurement(ProviderKind.HTTP, VersionStats(500, 0, 900.0), VersionStats(5000, 5, 20.0)),),
    "quiet": (Measurement(ProviderKind.HTTP, VersionStats(2, 0, 20.0), VersionStats(10, 0, 20.0)),),
    "none": None,
}


@dataclass(frozen=True)
class Tick:
    minutes: int
    checks_pass: bool
    evidence: str
    fault: str | None


@dataclass(frozen=True)
class Person:
    kind: OverrideKind


ticks = st.builds(
    Tick,
    minutes=st.integers(0, 12),
    checks_pass=st.booleans(),
    evidence=st.sampled_from(sorted(MEASUREMENTS)),
    fault=st.sampled_from([None, None, None, None, "transient", "terminal"]),
)
people = st.builds(Person, kind=st.sampled_from([k for k in OverrideKind if k is not OverrideKind.RETRY]))
histories = st.lists(st.one_of(ticks, ticks, ticks, people), max_size=45)
documents = st.sampled_from(
    [
        CANARY_EVENT,
        event(
            promotion="manual",
            strategy={
                "type": "canary",
                "steps": [{"weight": 5, "bake": 60}, {"weight": 25, "bake": 120}, {"weight": 75, "bake": 60}],
                "guard": 120,
            },
        ),
        event(approveBeforeTraffic=True),
        BLUE_GREEN_EVENT,
        event(BLUE_GREEN_EVENT, promotion="manual"),
        event(
            analysis={
                "providers": [
                    {"type": "http"},
                    {
                        "type": "webhook",
                        "gate": "gate",
                        "stages": ["beforeTraffic", "eachStep", "beforePromotion"],
                    },
                ]
            }
        ),
    ]
)


class World:
    """One site on the in-memory App Service model, with a release being driven through it."""

    def __init__(self, doc, swap_duration: int):
        self.spec = spec(doc)
        self.target = self.spec.target
        self.platform = InMemorySlotPlatform(swap_duration=swap_duration)
        self.platform.add_site(self.target, production_release=OLD, version="1.0.0")
        self.site = SiteState(
            self.target.site_key, active=self.spec.release_id, last_good=LastGood(OLD, "1.0.0", self.spec.artifact)
        )
        self.release = Release(spec=self.spec, created_at=T0, phase_since=T0, next_check_at=T0)
        self.now = T0

    def observe(self, tick: Tick) -> Observation:
        need = machine.needs(self.release, self.site)
        if not need.slots:
            return Observation(site=self.site)
        token = self.release.swap.token if self.release.swap else None
        slots = self.platform.observe(self.target, swap_token=token)
        checks = None
        if need.checks and slots.staging_release == self.release.id:
            checks = tuple(
                CheckResult(c, tick.checks_pass, 200 if tick.checks_pass else 500) for c in self.spec.validation.checks
            )
        measurements = MEASUREMENTS[tick.evidence] if need.analysis else None
        gates = None
        if need.gate is not None:  # the webhook says what the checks say on this tick
            gates = (GateResult(ProviderKind.WEBHOOK, tick.checks_pass, "gate", need.gate),)
        return Observation(site=self.site, slots=slots, checks=checks, measurements=measurements, gates=gates)

    def apply(self, decision: Decision) -> Decision:
        for effect in decision.effects:
            if isinstance(effect, DeployToSlot):
                self.platform.deploy(
                    self.target,
                    release_id=effect.release_id,
                    version=effect.version,
                    artifact=effect.artifact,
                    app_settings=effect.app_settings,
                )
            elif isinstance(effect, SetWeight):
                self.platform.set_weight(self.target, effect.weight)
            elif isinstance(effect, RestoreStaging):
                self.platform.restore_staging(self.target, effect.last_good)
        return decision

    def begin_claimed_swap(self, decision: Decision) -> Decision:
        """As the service does: once the claim is saved, start the swap and record its token."""
        claim = decision.release.swap
        if not any(isinstance(e, BeginSwap) for e in decision.effects):
            return decision
        token = self.platform.begin_swap(self.target)
        started = machine.swap_started(decision.release, claim.claimed_at, token, self.now)
        return replace(started, audit=decision.audit + started.audit)

    def tick(self, tick: Tick) -> Decision:
        self.now += timedelta(minutes=tick.minutes)
        decision = decide(self.release, self.observe(tick), self.now)
        if tick.fault == "transient" and decision.effects:
            return machine.transient_failure(self.release, "503 from ARM", self.now)
        if tick.fault == "terminal" and decision.effects:
            return machine.terminal_failure(self.release, "403 from ARM", self.now)
        return self.begin_claimed_swap(self.apply(decision))

    def traffic_on_new_version(self) -> float:
        site = self.platform.sites[self.target.site_key]
        if site.production.settings.get("RELEASE_ID") == self.release.id:
            return 100.0
        staging = site.slots[self.target.slot].settings.get("RELEASE_ID")
        return site.weight if staging == self.release.id else 0.0


WEIGHT_RESETS = {Phase.PROMOTING, Phase.GUARDING, Phase.SUCCEEDED, Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED}


def check_step(before: Release, decision: Decision, world: World) -> None:
    after = decision.release
    # Final phases absorb.
    if before.is_final:
        assert after.phase is before.phase and decision.effects == ()
    # Every phase change is a lifecycle transition, and the audit tells the whole path.
    phase = before.phase
    for entry in decision.audit:
        assert entry.phase_from is phase
        assert entry.phase_to is phase or entry.phase_to in TRANSITIONS[phase]
        phase = entry.phase_to
    assert phase is after.phase
    # The desired weight only rises, except when promotion or a rollback resets it.
    if after.weight < before.weight:
        assert after.phase in WEIGHT_RESETS, (before.phase, after.phase, before.weight, after.weight)
    # Users never see more of the new version than the current step allows (until it is promoted).
    site = world.platform.sites[world.target.site_key]
    if site.production.settings.get("RELEASE_ID") != after.id:
        limit = after.steps[after.step].weight if after.step >= 0 and after.steps else 0.0
        assert world.traffic_on_new_version() <= max(limit, before.weight) + 1e-9


def settle(world: World, ticks: int = 20) -> None:
    """Tick a calm world (checks pass, healthy evidence, no faults) until the release is final."""
    calm = Tick(minutes=1, checks_pass=True, evidence="healthy", fault=None)
    for _ in range(ticks):
        if world.release.is_final:
            return
        before = world.release
        decision = world.tick(calm)
        check_step(before, decision, world)
        world.release = decision.release


def run(doc, swap_duration, history) -> World:
    world = World(doc, swap_duration)
    for event_ in history:
        before = world.release
        if isinstance(event_, Tick):
            decision = world.tick(event_)
        else:
            refusal = override_refusal(before, event_.kind)
            try:
                decision = apply_override(before, Override(event_.kind, person("pat"), "testing"), world.now)
            except OverrideRefused as refused:
                assert refusal is not None and refused.reason == refusal and refused.reason.strip()
                continue
            assert refusal is None, f"{event_.kind} was allowed in {before.phase} although refused: {refusal}"
            assert decision.effects == ()
        check_step(before, decision, world)
        world.release = decision.release
        world.site = machine.site_after(world.site, world.release)
    return world


@settings(max_examples=150, deadline=None)
@given(doc=documents, swap_duration=st.integers(0, 3), history=histories)
def test_random_histories_keep_every_invariant(doc, swap_duration, history):
    run(doc, swap_duration, history)


@settings(max_examples=150, deadline=None)
@given(doc=documents, swap_duration=st.integers(0, 3), history=histories)
def test_a_final_phase_is_reachable_from_every_phase(doc, swap_duration, history):
    world = run(doc, swap_duration, history)
    if not world.release.is_final and override_refusal(world.release, OverrideKind.ROLLBACK) is None:
        world.release = apply_override(
            world.release, Override(OverrideKind.ROLLBACK, person("pat"), "abandon"), world.now
        ).release
    settle(world)
    assert world.release.is_final, (world.release.phase, world.release.reason)
    if world.release.phase in (Phase.ROLLED_BACK, Phase.CANCELLED):
        assert world.traffic_on_new_version() == 0, "a rollback ends with no traffic on the new version"


@settings(max_examples=100, deadline=None)
@given(doc=documents, history=histories)
def test_healthy_evidence_and_approvals_always_end_in_success(doc, history):
    """Whatever people did before, a calm world with approvals and no rollback promotes the release."""
    calm_history = [
        replace(h, minutes=min(h.minutes, 2))
        for h in history
        if isinstance(h, Tick) and h.fault is None and h.evidence == "healthy" and h.checks_pass
    ]
    world = run(doc, 1, calm_history)
    calm = Tick(minutes=3, checks_pass=True, evidence="healthy", fault=None)
    for _ in range(60):
        if world.release.is_final:
            break
        if world.release.phase is Phase.AWAITING_APPROVAL:
            world.release = apply_override(
                world.release, Override(OverrideKind.APPROVE, person("pat"), "ok"), world.now
            ).release
            continue
        before = world.release
        decision = world.tick(calm)
        check_step(before, decision, world)
        world.release = decision.release
    assert world.release.phase is Phase.SUCCEEDED, (world.release.phase, world.release.reason)
    assert world.traffic_on_new_version() == 100


def test_every_override_in_every_phase_is_either_allowed_or_refused_with_a_reason():
    base = Release(spec=spec(), created_at=T0, phase_since=T0)
    for phase in Phase:
        for paused in (False, True):
            release = replace(base, phase=phase, paused=paused, step=0 if phase is Phase.SHIFTING else -1)
            for kind in OverrideKind:
                reason = override_refusal(release, kind)
                if kind is OverrideKind.RETRY:
                    continue
                if reason is None:
                    decision = apply_override(release, Override(kind, person("pat"), "why"), T0)
                    assert decision.audit and decision.audit[0].actor == person("pat").label
                else:
                    assert reason.strip()


@settings(max_examples=150, deadline=None)
@given(doc=documents, swap_duration=st.integers(0, 3), history=histories)
def test_without_platform_faults_every_rollback_ends_rolled_back_with_no_traffic_on_the_new_version(
    doc, swap_duration, history
):
    world = run(doc, swap_duration, [h for h in history if not (isinstance(h, Tick) and h.fault)])
    if world.release.is_final:
        return
    if override_refusal(world.release, OverrideKind.ROLLBACK) is None:
        world.release = apply_override(
            world.release, Override(OverrideKind.ROLLBACK, person("pat"), "abandon"), world.now
        ).release
    settle(world)
    assert world.release.phase in (Phase.ROLLED_BACK, Phase.CANCELLED), (world.release.phase, world.release.reason)
    assert world.traffic_on_new_version() == 0
    production = world.platform.sites[world.target.site_key].production.settings.get("RELEASE_ID")
    assert production == OLD, "production serves the last good release again"
