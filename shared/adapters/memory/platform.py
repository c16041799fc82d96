"""A model of App Service slots: deploys, routing weights, swaps that take time, failures on demand."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime

from shared.adapters.memory.doubles import FakeClock
from shared.adapters.slot_settings import release_settings
from shared.domain.model import (
    Artifact,
    LastGood,
    SlotObservation,
    SwapState,
    SwapStatus,
    Target,
    Warmup,
)
from shared.ports import (
    TerminalPlatformError,
    TransientPlatformError,
)


@dataclass
class SlotModel:
    host: str
    settings: dict[str, str] = field(default_factory=dict)
    artifact: Artifact | None = None
    ready: bool = True


@dataclass
class SwapOp:
    slot: str
    remaining_observations: int
    fail_with: str | None = None
    status: SwapStatus = SwapStatus.IN_PROGRESS
    started_at: datetime | None = None


@dataclass
class SiteModel:
    production: SlotModel
    slots: dict[str, SlotModel]
    weight: float = 0.0
    swaps: dict[str, SwapOp] = field(default_factory=dict)


class InMemorySlotPlatform:
    """A model of App Service slots: settings, artifact, ramp-up weight and slot swaps.

    ``swap_duration`` is how many observations a swap stays in progress; ``fail_next`` makes the
    next call of an operation raise (fault injection); ``calls`` records every operation.
    """

    def __init__(
        self,
        *,
        auto_create: bool = True,
        swap_duration: int = 0,
        warmup_observations: int = 0,
        clock: FakeClock | None = None,
        max_swap_seconds: float = 25 * 60,
    ):
        self._lock = threading.RLock()
        # With a clock, no swap outlasts ``max_swap_seconds`` (Azure reports failures after 11-23
        # minutes), however far apart the observations are.
        self.clock = clock
        self.max_swap_seconds = max_swap_seconds
        self.sites: dict[str, SiteModel] = {}
        self.auto_create = auto_create
        self.swap_duration = swap_duration
        self.warmup_observations = warmup_observations
        self._warmup: dict[tuple[str, str], int] = {}
        self._faults: dict[str, list[Exception]] = {}
        self._tokens = itertools.count(1)
        self.calls: list[tuple[str, str]] = []
        self.fail_next_swap_with: str | None = None

    def add_site(self, target: Target, *, production_release: str | None = None, version: str = "0") -> SiteModel:
        with self._lock:
            production = SlotModel(host=f"{target.site}.azurewebsites.net")
            if production_release:
                production.settings.update(RELEASE_ID=production_release, RELEASE_VERSION=version)
            site = SiteModel(
                production=production,
                slots={target.slot: SlotModel(host=f"{target.site}-{target.slot}.azurewebsites.net")},
            )
            self.sites[target.site_key] = site
            return site

    def fail_next(self, operation: str, error: Exception) -> None:
        """Make the next call of ``operation`` (observe, deploy, set_weight, begin_swap) raise."""
        with self._lock:
            self._faults.setdefault(operation, []).append(error)

    def _enter(self, operation: str, target: Target) -> tuple[SiteModel, SlotModel]:
        self.calls.append((operation, target.site_key))
        faults = self._faults.get(operation)
        if faults:
            raise faults.pop(0)
        site = self.sites.get(target.site_key)
        if site is None:
            if not self.auto_create:
                raise TerminalPlatformError(
                    f"site {target.site} was not found in resource group {target.resource_group}",
                    status=404,
                    code="ResourceNotFound",
                )
            site = self.add_site(target)
        slot = site.slots.get(target.slot)
        if slot is None:
            raise TerminalPlatformError(
                f"slot {target.slot} does not exist on site {target.site}; create it first",
                status=404,
                code="ResourceNotFound",
            )
        return site, slot

    def observe(self, target: Target, *, swap_token: str | None = None, probe_staging: bool = False) -> SlotObservation:
        with self._lock:
            site, slot = self._enter("observe", target)
            for op in site.swaps.values():
                if op.status is SwapStatus.IN_PROGRESS:
                    if op.remaining_observations > 0 and not self._swap_timed_out(op):
                        op.remaining_observations -= 1
                    else:
                        self._finish_swap(site, op)
            key = (target.site_key, target.slot)
            if key in self._warmup:
                self._warmup[key] -= 1
                if self._warmup[key] <= 0:
                    del self._warmup[key]
                    slot.ready = True
            swap = None
            if swap_token is not None:
                op = site.swaps.get(swap_token)
                swap = (
                    SwapState(op.status, op.fail_with or "")
                    if op
                    else SwapState(SwapStatus.FAILED, "unknown continuation token")
                )
            return SlotObservation(
                production_release=site.production.settings.get("RELEASE_ID"),
                staging_release=slot.settings.get("RELEASE_ID"),
                staging_ready=slot.ready,
                weight=site.weight,
                staging_host=slot.host,
                production_host=site.production.host,
                swap=swap,
            )

    def deploy(
        self,
        target: Target,
        *,
        release_id: str,
        version: str,
        artifact: Artifact,
        app_settings: dict[str, str],
        warmup: Warmup | None = None,
    ) -> None:
        with self._lock:
            _, slot = self._enter("deploy", target)
            slot.settings = release_settings(
                slot.settings,
                release_id=release_id,
                version=version,
                artifact=artifact,
                app_settings=app_settings,
                warmup=warmup,
            )
            slot.artifact = artifact
            if self.warmup_observations:
                slot.ready = False
                self._warmup[(target.site_key, target.slot)] = self.warmup_observations

    def set_weight(self, target: Target, weight: float) -> None:
        with self._lock:
            site, _ = self._enter("set_weight", target)
            site.weight = weight

    def begin_swap(self, target: Target) -> str:
        with self._lock:
            site, _ = self._enter("begin_swap", target)
            if any(op.status is SwapStatus.IN_PROGRESS for op in site.swaps.values()):
                raise TransientPlatformError("another swap is in progress on this site", status=409, code="Conflict")
            token = f"swap-{next(self._tokens)}"
            started = self.clock.now() if self.clock is not None else None
            op = SwapOp(target.slot, self.swap_duration, fail_with=self.fail_next_swap_with, started_at=started)
            self.fail_next_swap_with = None
            site.swaps[token] = op
            if self.swap_duration == 0:
                self._finish_swap(site, op)
            return token

    def restore_staging(self, target: Target, last_good: LastGood) -> None:
        self.deploy(
            target,
            release_id=last_good.release_id,
            version=last_good.version,
            artifact=last_good.artifact,
            app_settings=last_good.app_settings,
        )

    def _swap_timed_out(self, op: SwapOp) -> bool:
        if self.clock is None or op.started_at is None:
            return False
        return (self.clock.now() - op.started_at).total_seconds() >= self.max_swap_seconds

    @staticmethod
    def _finish_swap(site: SiteModel, op: SwapOp) -> None:
        if op.fail_with:
            op.status = SwapStatus.FAILED
            return
        slot = site.slots[op.slot]
        production = site.production
        slot.settings, production.settings = production.settings, slot.settings
        slot.artifact, production.artifact = production.artifact, slot.artifact
        op.status = SwapStatus.SUCCEEDED

    def swaps_started(self, target: Target) -> int:
        return sum(1 for op, key in self.calls if op == "begin_swap" and key == target.site_key)
