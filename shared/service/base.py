"""What every part of the service shares: the ports, the results, and the commit of one decision."""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from shared import telemetry
from shared.domain import lifecycle
from shared.domain.model import Actor, Alert, Decision, Phase, Release, SiteState
from shared.ports import (
    Analyzer,
    Authority,
    Clock,
    ConcurrencyConflict,
    Notifications,
    Notifier,
    ReleaseStore,
    ReleaseWrite,
    SlotPlatform,
    StopSwitch,
    Validator,
    Versioned,
    WorkQueue,
)

log = logging.getLogger("release_controller.service")

CONFLICT_RETRIES = 6
# How long one release's observations (slot probes, checks, analysis) may take in one reconcile.
OBSERVE_BUDGET_SECONDS = 60.0
MAX_FOLLOW_UPS = 8
# A work message may be scheduled at most this far ahead (Azure Storage queues allow 7 days of
# invisibility); a release due later is found by the timer in the due index.
MAX_SCHEDULE_AHEAD_SECONDS = 6 * 86400

# The releases committed during one operation (reconcile, override, ingestion): each gets one work
# message for its next due time when the operation ends, however many saves it took.
_FOLLOW_UPS: contextvars.ContextVar[dict[str, Release] | None] = contextvars.ContextVar("follow_ups", default=None)


F = TypeVar("F", bound=Callable[..., Any])


def one_message_per_release(method: F) -> F:
    """The saves ``method`` makes send one work message per release, when it returns."""

    @functools.wraps(method)
    def wrapper(self: ServiceBase, *args: Any, **kwargs: Any) -> Any:
        with self.follow_ups():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class TooManyConflicts(ConcurrencyConflict):
    """Other writers kept winning; the caller should try again a little later."""


@dataclass(frozen=True)
class IngestResult:
    outcome: Literal["created", "duplicate", "rejected"]
    release: Release | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    rejection_id: str | None = None
    # Why it was refused: the event is not valid, its origin is not proven, or the policy says no.
    refusal: Literal["invalid", "unproven", "forbidden"] | None = None


@dataclass(frozen=True)
class ReconcileResult:
    release_id: str
    outcome: Literal["advanced", "unchanged", "not-due", "final", "transient", "missing"]
    phase: Phase | None = None
    release: Release | None = field(default=None, compare=False, repr=False)  # as it stands now


@dataclass
class TickReport:
    reconciled: list[ReconcileResult] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped_for_budget: list[str] = field(default_factory=list)


class ServiceBase:
    def __init__(
        self,
        store: ReleaseStore,
        platform: SlotPlatform,
        validator: Validator,
        analyzer: Analyzer,
        notifier: Notifier,
        clock: Clock,
        *,
        authority: Authority,
        conflict_retries: int = CONFLICT_RETRIES,
        observe_budget_seconds: float = OBSERVE_BUDGET_SECONDS,
        work_queue: WorkQueue | None = None,
        notifications: Notifications | None = None,
    ):
        self.work_queue = work_queue
        self.authority = authority
        self.observe_budget_seconds = observe_budget_seconds
        self.store = store
        self.platform = platform
        self.validator = validator
        self.analyzer = analyzer
        self.notifier = notifier
        self.notifications = notifications
        self.clock = clock
        self.conflict_retries = conflict_retries

    # -- one decision, committed -----------------------------------------------------------------

    def _commit(
        self, loaded: Versioned[Release], decision: Decision, site: Versioned[SiteState] | None = None
    ) -> tuple[Versioned[Release], str | None]:
        """Write ``decision`` If-Match the ETag ``loaded`` was read at, with the site row (as read
        in ``site``, or now) when the release frees its site. Returns the committed release and the
        site's next active release when the site changed hands. Raises ConcurrencyConflict."""
        release = loaded.value
        decision = self._announce(decision)
        telemetry.decided(release, decision, self.clock.now())
        site = site if site is not None else self.store.load_site(release.site_key)
        new_site = lifecycle.site_after(site.value, decision.release)
        site_write = Versioned(new_site, site.etag) if new_site != site.value else None
        write = ReleaseWrite(decision.release, loaded.etag, decision.audit, measurements=decision.measurements)
        etags = self.store.commit(release.site_key, [write], site_write)
        committed = replace(
            decision.release,
            audit_seq=release.audit_seq + len(decision.audit),
            measured_seq=release.measured_seq + len(decision.measurements),
            indexed_due=lifecycle.attention_at(decision.release),
        )
        handed_to = new_site.active if site_write is not None and new_site.active != release.id else None
        self._follow_up(committed)
        return Versioned(committed, etags[release.id]), handed_to

    # -- work messages: a release's next due time, scheduled on the work queue -------------------

    @contextmanager
    def follow_ups(self) -> Iterator[None]:
        """Within this scope, saves only note the release; one message per release is sent at the
        end, for its last saved due time. Nested scopes join the outermost."""
        if _FOLLOW_UPS.get() is not None:
            yield
            return
        token = _FOLLOW_UPS.set({})
        try:
            yield
        finally:
            pending = _FOLLOW_UPS.get() or {}
            _FOLLOW_UPS.reset(token)
            for release in pending.values():
                self._send_follow_up(release)

    def _follow_up(self, release: Release) -> None:
        if self.work_queue is None:
            return
        pending = _FOLLOW_UPS.get()
        if pending is None:
            self._send_follow_up(release)
        else:
            pending[release.id] = release

    def _send_follow_up(self, release: Release) -> None:
        """A message that reaches a worker when ``release`` is next due. Best effort: a message not
        sent (or lost) is made up for by the timer, which finds the release in the due index."""
        if self.work_queue is None:
            return
        ref = self.store.due_ref(release)
        if ref is None:
            return
        delay = (ref.due_at - self.clock.now()).total_seconds()
        if delay > MAX_SCHEDULE_AHEAD_SECONDS:
            return
        try:
            self.work_queue.send(ref, delay_seconds=max(0.0, delay))
        except Exception as exc:  # the due index still has it: the timer sends it if this one is missing
            log.warning("release %s: its next work message was not sent (%s); the timer will find it", release.id, exc)

    def _update(
        self,
        release_id: str,
        change: Callable[[Release], Decision | None],
        *,
        read: tuple[Versioned[Release], Versioned[SiteState]] | None = None,
    ) -> Versioned[Release] | None:
        """Apply ``change`` to the stored release and commit, re-reading on conflict. None when
        ``change`` has nothing to do. ``read``: the release and its site as just read (no read
        first)."""
        with self.follow_ups():
            return self._update_once(release_id, change, read)

    def _update_once(
        self,
        release_id: str,
        change: Callable[[Release], Decision | None],
        read: tuple[Versioned[Release], Versioned[SiteState]] | None,
    ) -> Versioned[Release] | None:
        for _ in range(self.conflict_retries):
            loaded, site = read if read is not None else (self.store.load_release(release_id), None)
            read = None
            decision = change(loaded.value)
            if decision is None:
                return None
            try:
                committed, handed_to = self._commit(loaded, decision, site)
            except ConcurrencyConflict:
                continue
            self._settle(committed, handed_to)
            return committed
        raise TooManyConflicts(f"release {release_id} kept changing; try again")

    # -- after a commit --------------------------------------------------------------------------

    def _settle(self, committed: Versioned[Release], handed_to: str | None, depth: int = 0) -> Versioned[Release]:
        """What follows a commit: deliver the alerts it recorded and start the release that now owns
        the site. (A settled release left the due index in the commit that settled it.)"""
        if committed.value.outbox:
            committed = self._deliver_alerts(committed)
        if handed_to is not None and depth < MAX_FOLLOW_UPS:
            self._start_next(handed_to, depth + 1)
        return committed

    # Provided by the parts of ReleaseService (Intake, Reconciler):

    def retry(self, release_id: str, *, actor: Actor, reason: str) -> Release:
        raise NotImplementedError

    def _start_next(self, release_id: str, depth: int) -> None:
        raise NotImplementedError

    # -- the global stop switch ----------------------------------------------------------------

    def stop_reason(self) -> str | None:
        """Why every release is stopped, when an admin pulled the switch (read at most every
        STOP_CACHE_SECONDS per process: pulling it holds every release within that)."""
        now = time.monotonic()
        cached = getattr(self, "_stop_cache", None)
        if cached is not None and now - cached[0] < STOP_CACHE_SECONDS:
            return cached[1]
        switch = self.store.load_stop().value
        reason = _stop_text(switch) if switch and switch.on else None
        self._stop_cache = (now, reason)
        return reason

    def set_stop(self, on: bool, *, actor: Actor, reason: str) -> StopSwitch:
        """Pull (``on``) or release the global stop. Raises TooManyConflicts."""
        for _ in range(self.conflict_retries):
            current = self.store.load_stop()
            switch = StopSwitch(on, reason, actor.label, self.clock.now())
            try:
                self.store.save_stop(switch, current.etag)
            except ConcurrencyConflict:
                continue
            self._stop_cache = (time.monotonic(), _stop_text(switch) if on else None)
            log.warning("global stop %s by %s: %s", "pulled" if on else "released", actor.id, reason)
            return switch
        raise TooManyConflicts("the stop switch kept changing; try again")

    # -- alerts and notifications: delivered after the save that recorded them ------------------

    def _announce(self, decision: Decision) -> Decision:
        """The decision with a notification for each of its audit entries a configured sink wants."""
        if self.notifications is None:
            return decision
        return lifecycle.announce(decision, self.notifications.wanted(decision.release))

    def _sinks(self, release: Release, alert: Alert) -> list[str]:
        """Where an alert goes: the log (warnings and errors, for alert rules) and each configured
        sink that takes its event for its site; minus those that have it already."""
        sinks = [LOG_SINK] if alert.severity != "info" else []
        if self.notifications is not None:
            sinks += self.notifications.sinks(release, alert)
        return [s for s in sinks if s not in alert.delivered]

    def _deliver_alerts(self, loaded: Versioned[Release]) -> Versioned[Release]:
        """Send every pending alert that is due to every sink that lacks it, then record the outcome:
        delivered, retried later with backoff, or given up on in the audit. A sink failing never
        stops a release (at least once, maybe twice)."""
        release = loaded.value
        now = self.clock.now()
        outcomes: dict[int, lifecycle.Delivery] = {}
        for alert in lifecycle.due_alerts(release, now):
            delivered: list[str] = []
            failures: list[tuple[str, str]] = []
            for sink in self._sinks(release, alert):
                try:
                    if sink == LOG_SINK:
                        self.notifier.notify(release, alert.severity, alert.message)
                    else:
                        assert self.notifications is not None
                        self.notifications.send(sink, release, alert)
                except Exception as exc:  # never stops a release: retried with backoff
                    why = _failure(exc)
                    log.warning("release %s: %s not delivered to %s yet: %s", release.id, alert.event, sink, why)
                    failures.append((sink, why))
                else:
                    delivered.append(sink)
            log_failed = any(sink == LOG_SINK for sink, _ in failures)
            outcomes[alert.seq] = lifecycle.Delivery(tuple(delivered), tuple(failures), retry_forever=log_failed)
            if failures and not log_failed and alert.attempts + 1 >= lifecycle.MAX_NOTIFICATION_ATTEMPTS:
                sinks = ", ".join(sink for sink, _ in failures)
                log.error("release %s: gave up on the %s notification to %s", release.id, alert.event, sinks)
        current = loaded
        for _ in range(self.conflict_retries):
            decision = lifecycle.alerts_delivered(current.value, outcomes, self.clock.now())
            if decision is None:
                return current
            try:
                committed, _ = self._commit(current, decision)
                return committed
            except ConcurrencyConflict:
                current = self.store.load_release(release.id)
        return current


LOG_SINK = "log"
STOP_CACHE_SECONDS = 5.0


def _failure(exc: Exception) -> str:
    """Why a sink refused, short and without a URL (a webhook's URL is its secret)."""
    text = str(exc).split("\n", 1)[0]
    if "://" in text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def _stop_text(switch: StopSwitch) -> str:
    """The global stop as a held release says it (the same words whoever read the switch)."""
    return f"{switch.reason} (by {switch.by} at {switch.at:%Y-%m-%d %H:%M}Z)"
