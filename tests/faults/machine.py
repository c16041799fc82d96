"""A stateful fault run: hypothesis drives random interleavings of everything that can happen to
the controller, and every invariant is checked after every step.

Each scenario is a sequence of steps over two sites: releases submitted (new, repeated, with a
different plan under the same id), rollouts over both sites in two waves, timer ticks and single
reconciles, overrides from two people, retries, faults on every platform call (transient, no
answer, terminal, a token outage, a swap the platform fails), crashes after a platform call and
before or after a save, storage outages and restarts, someone else acting in the middle of an
operation (a second reconciler, a person, the next build), a notifier that fails, clock jumps,
and metrics flipping between good, bad, too few and none. At the end the world is healed and every
release and rollout must settle within a bound of calm ticks, with its alerts delivered.

``python -m tests.faults.run`` runs it at scale; ``tests/faults/test_interleavings.py`` runs a
bounded, seeded subset in the suite.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shared.adapters.memory import InMemoryReleaseStore
from shared.domain.model import OverrideKind
from tests.faults.world import OPERATIONS, SITES, VARIANTS, Fault, World

PEOPLE_DO = [k for k in OverrideKind if k is not OverrideKind.RETRY]
INTERLOPERS = ("second reconciler", "pause", "rollback", "approve", "next build", "same event")
PLANS = sorted(VARIANTS)


@dataclass
class RunStats:
    scenarios: int = 0
    steps: int = 0
    releases: int = 0
    calm_rounds_max: int = 0
    faults: int = 0
    crashes: int = 0
    restarts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rollouts: Counter[str] = field(default_factory=Counter)


STATS = RunStats()


class Interleavings(RuleBasedStateMachine):
    """The in-memory store; ``AzuriteInterleavings`` runs the same machine on Table Storage."""

    def __init__(self) -> None:
        super().__init__()
        self.world = self.make_world()
        self.restarts = 0
        STATS.scenarios += 1

    def make_world(self) -> World:
        return World(InMemoryReleaseStore())

    def _release_id(self, n: int) -> str | None:
        known = self.world.known
        return known[n % len(known)] if known else None

    def _step(self) -> None:
        STATS.steps += 1

    # -- CI and people -----------------------------------------------------------------------------

    @initialize(site=st.sampled_from(SITES), version=st.integers(1, 4))
    def first_release(self, site: str, version: int) -> None:
        self.submit(site, version, 0, False)

    @rule(
        site=st.sampled_from(SITES),
        version=st.integers(1, 4),
        plan=st.integers(0, 4),
        changed=st.sampled_from([False, False, False, True]),
    )
    def submit(self, site: str, version: int, plan: int, changed: bool) -> None:
        """A release event: new, delivered again, or (rarely) a different plan under a used id."""
        self._step()
        variant = PLANS[(version + plan) % len(PLANS)] if changed else PLANS[(version + len(site)) % len(PLANS)]
        self.world.run(lambda: self.world.submit(site, version, variant, changed=changed))

    @rule(version=st.integers(5, 6), plan=st.integers(0, 4))
    def submit_rollout(self, version: int, plan: int) -> None:
        """A rollout over both sites (wave one, then wave two): new, or delivered again."""
        self._step()
        self.world.run(lambda: self.world.submit_rollout(version, PLANS[(version + plan) % len(PLANS)]))

    @rule(n=st.integers(0, 64), kind=st.sampled_from(PEOPLE_DO), actor=st.sampled_from(["pat", "dana"]))
    def override(self, n: int, kind: OverrideKind, actor: str) -> None:
        self._step()
        release_id = self._release_id(n)
        if release_id is not None:
            self.world.run(lambda: self.world.override(release_id, kind, actor=actor))

    @rule(n=st.integers(0, 64))
    def retry(self, n: int) -> None:
        self._step()
        release_id = self._release_id(n)
        if release_id is not None:
            self.world.run(lambda: self.world.override(release_id, OverrideKind.RETRY))

    # -- time and the reconcilers ----------------------------------------------------------------

    @rule(minutes=st.sampled_from([0, 0.5, 1, 1, 2, 3, 5, 10, 35, 90]))
    def tick(self, minutes: float) -> None:
        self._step()
        self.world.run(lambda: self.world.tick(minutes))

    @rule(minutes=st.sampled_from([0, 1, 1, 2, 5]))
    def tick_again(self, minutes: float) -> None:
        """Time passing is the most common thing of all."""
        self.tick(minutes)

    @rule(n=st.integers(0, 64), stale=st.booleans())
    def work_message(self, n: int, stale: bool) -> None:
        """A worker takes the release's work message: the one its last save scheduled, or a stale
        duplicate of an earlier one."""
        self._step()
        release_id = self._release_id(n)
        release = self.world.release(release_id) if release_id is not None else None
        ref = self.world.raw_store.due_ref(release) if release is not None else None
        if ref is not None:
            if stale:
                ref = replace(ref, due_at=ref.due_at - timedelta(minutes=5))
            self.world.run(lambda: self.world.service.work(ref))

    @rule(n=st.integers(0, 64), force=st.booleans())
    def reconcile_one(self, n: int, force: bool) -> None:
        self._step()
        release_id = self._release_id(n)
        if release_id is not None:
            self.world.run(lambda: self.world.service.reconcile(release_id, force=force))

    # -- faults ------------------------------------------------------------------------------------

    @rule(
        fault=st.one_of(
            st.tuples(
                st.just("platform"),
                st.sampled_from([*OPERATIONS, "*"]),
                st.sampled_from(["transient", "no-answer", "terminal", "crash-after"]),
            ),
            st.tuples(st.just("token outage"), st.integers(1, 40), st.none()),
            st.tuples(st.just("crash"), st.sampled_from(["before a save", "after a save"]), st.none()),
            st.tuples(st.just("storage outage"), st.integers(1, 3), st.none()),
            st.tuples(st.just("notifier down"), st.integers(1, 3), st.none()),
            st.tuples(st.just("swap fails"), st.none(), st.none()),
        )
    )
    def fault(self, fault: tuple[str, Any, Any]) -> None:
        self._step()
        kind, a, b = fault
        world = self.world
        STATS.faults += 1
        if kind == "platform":
            if b == "crash-after":
                STATS.crashes += 1
            world.platform.faults.append(Fault(a, b))
        elif kind == "token outage":
            world.platform.token_outage = a
        elif kind == "crash":
            STATS.crashes += 1
            if a == "before a save":
                world.store.crash_before_commit = True
            else:
                world.store.crash_after_commit = True
        elif kind == "storage outage":
            world.store.unavailable_calls = a
        elif kind == "notifier down":
            world.notifier.failures = a
        else:
            world.platform.model.fail_next_swap_with = "ExpectationFailed: the slot did not warm up (417)"

    @rule(
        where=st.sampled_from(["before a platform change", "before a save"]),
        who=st.sampled_from(INTERLOPERS),
        n=st.integers(0, 64),
        site=st.sampled_from(SITES),
    )
    def someone_else_acts(self, where: str, who: str, n: int, site: str) -> None:
        self._step()
        world = self.world

        def act() -> None:
            release_id = self._release_id(n)
            if who == "second reconciler":
                world.run(lambda: world.tick(0))
            elif who == "next build":
                world.run(lambda: world.submit(site, 1 + n % 4, PLANS[(1 + n % 4 + len(site)) % len(PLANS)]))
            elif who == "same event" and release_id is not None:
                world.run(lambda: world.redeliver(release_id))
            elif release_id is not None:
                kind = {"pause": OverrideKind.PAUSE, "rollback": OverrideKind.ROLLBACK}.get(who, OverrideKind.APPROVE)
                world.run(lambda: world.override(release_id, kind, actor="dana"))

        if where == "before a save":
            world.store.before_commit = act
        else:
            world.platform.before_change = act

    @rule(
        metrics=st.sampled_from(["good", "good", "bad", "quiet", "none"]),
        checks_pass=st.sampled_from([True, True, False]),
        swap_observations=st.integers(0, 4),
    )
    def environment(self, metrics: str, checks_pass: bool, swap_observations: int) -> None:
        """What the new version's metrics and smoke checks say, and how long swaps take."""
        self._step()
        self.world.metrics(metrics)
        self.world.validator.passed = checks_pass
        self.world.platform.model.swap_duration = swap_observations

    @precondition(lambda self: self.world.restart_storage is not None and self.restarts < 1)
    @rule(chance=st.integers(0, 3))
    def storage_restarts(self, chance: int) -> None:
        self._step()
        if chance:
            return  # restarts are rare: at most one per scenario, in about a quarter of the tries
        self.restarts += 1
        STATS.restarts += 1
        assert self.world.restart_storage is not None
        self.world.restart_storage()

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def every_invariant_holds(self) -> None:
        self.world.check()

    def teardown(self) -> None:
        rounds = self.world.calm()
        self.world.check_settled()
        STATS.releases += len(self.world.known)
        STATS.outcomes.update(r.phase.value for r in self.world.releases())
        STATS.rollouts.update(r.phase for r in self.world.raw_store.list_rollouts())
        STATS.calm_rounds_max = max(STATS.calm_rounds_max, rounds)
        self.cleanup()

    def cleanup(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# The same machine on Table Storage (Azurite on disk, so it can restart)
# ---------------------------------------------------------------------------------------------


class _SharedAzurite:
    server: ClassVar[Any] = None
    folder: ClassVar[Path | None] = None

    @classmethod
    def get(cls) -> Any:
        if cls.server is None:
            from devstack.azurite import start_azurite

            cls.folder = Path(tempfile.mkdtemp(prefix="azurite-faults-"))
            cls.server = start_azurite(location=cls.folder)
            atexit.register(cls.stop)
        return cls.server

    @classmethod
    def stop(cls) -> None:
        if cls.server is not None:
            cls.server.stop()
            cls.server = None
        if cls.folder is not None:
            shutil.rmtree(cls.folder, ignore_errors=True)
            cls.folder = None


class AzuriteInterleavings(Interleavings):
    def make_world(self) -> World:
        from azure.data.tables import TableServiceClient

        from shared.adapters.table_store import TableReleaseStore

        server = _SharedAzurite.get()
        self.prefix = "f" + uuid.uuid4().hex[:12]
        self.service_client = TableServiceClient.from_connection_string(server.connection_string, retry_total=0)
        store = TableReleaseStore(self.service_client, prefix=self.prefix)
        return World(store, restart_storage=server.restart)

    def cleanup(self) -> None:
        for name in ("Releases", "ReleaseIndex", "RejectedEvents"):
            self.service_client.delete_table(f"{self.prefix}{name}")
