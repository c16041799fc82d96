"""Telemetry: structured fields on every log line, and OpenTelemetry traces and metrics through the
Azure Monitor distro when APPLICATIONINSIGHTS_CONNECTION_STRING is set.

Nothing here imports OpenTelemetry until ``configure`` finds a connection string, so with telemetry
off the app starts as fast as before and every hook below is a few attribute reads.

- Every log record made while a release is being worked on carries ``release_id``,
  ``release_version``, ``site``, ``phase`` and ``step`` (customDimensions in Application Insights).
- One span per reconcile (``reconcile <release id>``) with the release's fields, its outcome, an
  event per audit entry and per effect applied; ARM and Storage calls are its children (the
  distro's Azure SDK instrumentation).
- Metrics (meter ``release_controller``): ``releases.finished`` {outcome, site}, ``releases.rollbacks``
  {site, cause}, ``release.time_to_detect`` (s), ``release.time_to_promote`` (s),
  ``reconcile.duration`` (ms) {outcome}, ``releases.due`` and ``work_queue.depth`` (gauges).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("release_controller.telemetry")

LOGGER_NAME = "release_controller"
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
FIELDS = ("release_id", "release_version", "site", "phase", "step")

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("release_fields", default=None)
_lock = threading.Lock()
_factory_installed = False
_otel: _Otel | None = None


# -- structured fields on every log line ------------------------------------------------------


def _install_record_factory() -> None:
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            fields = _fields.get()
            if fields:
                for name, value in fields.items():
                    if value is not None and not hasattr(record, name):
                        setattr(record, name, value)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


@contextmanager
def working_on(release_id: str) -> Iterator[dict[str, Any]]:
    """Log lines made inside carry this release's fields (``describe`` fills in the rest)."""
    _install_record_factory()
    token = _fields.set({"release_id": release_id})
    try:
        yield _fields.get() or {}
    finally:
        _fields.reset(token)


def describe(release: Any) -> None:
    """Fill in the current release's version, site, phase and step, once it is loaded."""
    fields = _fields.get()
    if fields is None or fields.get("release_id") != release.id:
        return
    spec = release.spec
    fields.update(
        release_version=spec.version,
        site=spec.target.site,
        phase=release.phase.value,
        step=release.step + 1 if release.step >= 0 else None,
    )


def current_fields() -> Mapping[str, Any]:
    return dict(_fields.get() or {})


# -- OpenTelemetry, only when configured ------------------------------------------------------


class _Otel:
    def __init__(self) -> None:
        from opentelemetry import metrics, trace

        self.trace = trace
        self.tracer = trace.get_tracer(LOGGER_NAME)
        meter = metrics.get_meter(LOGGER_NAME)
        self.finished = meter.create_counter("releases.finished", description="Releases that ended, by outcome")
        self.rollbacks = meter.create_counter("releases.rollbacks", description="Rollbacks started, by cause")
        self.time_to_detect = meter.create_histogram(
            "release.time_to_detect", unit="s", description="From the exposed step's start to the rollback"
        )
        self.time_to_promote = meter.create_histogram(
            "release.time_to_promote", unit="s", description="From creation to success"
        )
        self.duration = meter.create_histogram("reconcile.duration", unit="ms", description="One reconcile")
        self.due = meter.create_gauge("releases.due", description="Releases due at the timer's tick")
        self.queue_depth = meter.create_gauge("work_queue.depth", description="Messages in the work queue")


def enabled() -> bool:
    return _otel is not None


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Export through Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set (once per
    process; the distro is imported only then). With APPLICATIONINSIGHTS_AUTHENTICATION_STRING
    ``Authorization=AAD`` the exporter signs in with the managed identity."""
    global _otel
    env = os.environ if env is None else env
    connection = env.get(CONNECTION_SETTING)
    if not connection:
        return False
    with _lock:
        if _otel is not None:
            return True
        from azure.monitor.opentelemetry import configure_azure_monitor

        options: dict[str, Any] = {"connection_string": connection, "logger_name": LOGGER_NAME}
        if not env.get("OTEL_TRACES_SAMPLER"):
            # Every reconcile is kept (they are few, and each can matter at 3 a.m.), not the distro's
            # default of 5 traces a second; OTEL_TRACES_SAMPLER(_ARG) chooses otherwise.
            options["sampling_ratio"] = 1.0
        auth = env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or ""
        if "authorization=aad" in auth.lower():
            from azure.identity import ManagedIdentityCredential

            client_id = next((p.split("=", 1)[1] for p in auth.split(";") if p.lower().startswith("clientid=")), None)
            options["credential"] = ManagedIdentityCredential(client_id=client_id)
        configure_azure_monitor(**options)
        _otel = _Otel()
    _install_record_factory()
    log.info("telemetry: exporting traces, metrics and logs to Azure Monitor")
    return True


def flush() -> None:
    """Export what is buffered now (tests; the end of a process)."""
    if _otel is None:
        return
    from opentelemetry import metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force = getattr(provider, "force_flush", None)
        if force is not None:
            force()
    from opentelemetry import _logs

    force = getattr(_logs.get_logger_provider(), "force_flush", None)
    if force is not None:
        force()


class _Span:
    """What a reconcile reports about itself; a no-op without OpenTelemetry."""

    def __init__(self, span: Any) -> None:
        self.span = span
        self.outcome = "error"

    def event(self, name: str, **attributes: Any) -> None:
        if self.span is not None:
            self.span.add_event(name, {k: _attr(v) for k, v in attributes.items() if v is not None})

    def set(self, **attributes: Any) -> None:
        if self.span is not None:
            for key, value in attributes.items():
                if value is not None:
                    self.span.set_attribute(key, _attr(value))


def _attr(value: Any) -> Any:
    return value if isinstance(value, (str, bool, int, float)) else str(value)


_current_span: contextvars.ContextVar[_Span | None] = contextvars.ContextVar("reconcile_span", default=None)


@contextmanager
def reconcile_span(release_id: str) -> Iterator[_Span]:
    """The span of one reconcile (and the release's fields on its log lines). A reconcile that goes
    on at once from what it saved stays in the span it started in."""
    current = _current_span.get()
    if current is not None and (_fields.get() or {}).get("release_id") == release_id:
        yield current
        return
    with working_on(release_id):
        if _otel is None:
            yield _Span(None)
            return
        started = time.perf_counter()
        with _otel.tracer.start_as_current_span(f"reconcile {release_id}") as span:
            wrapper = _Span(span)
            token = _current_span.set(wrapper)
            try:
                wrapper.set(**{"release.id": release_id})
                yield wrapper
            finally:
                _current_span.reset(token)
                fields = current_fields()
                wrapper.set(**{f"release.{k}": v for k, v in fields.items() if k != "release_id"})
                wrapper.set(**{"reconcile.outcome": wrapper.outcome})
                _otel.duration.record((time.perf_counter() - started) * 1000, {"outcome": wrapper.outcome})


def span_event(name: str, **attributes: Any) -> None:
    span = _current_span.get()
    if span is not None:
        span.event(name, **attributes)


def decided(before: Any, decision: Any, now: Any) -> None:
    """Metrics and span events from a decision about to be saved."""
    if _otel is None:
        return
    after = decision.release
    site = after.spec.target.site
    for entry in decision.audit:
        span_event(entry.action, phase_from=entry.phase_from.value, phase_to=entry.phase_to.value)
        if entry.action == "rollback.started":
            by_person = entry.actor != "controller"
            cause = "analysis" if "analysis" in entry.message else ("override" if by_person else "other")
            _otel.rollbacks.add(1, {"site": site, "cause": cause})
            exposed = before.step_started_at or before.phase_since
            if exposed is not None:
                _otel.time_to_detect.record((now - exposed).total_seconds(), {"site": site})
    for effect in decision.effects:
        span_event(f"effect.{type(effect).__name__}")
    if after.phase.is_final and not before.phase.is_final:
        _otel.finished.add(1, {"outcome": after.phase.value, "site": site})
        if after.phase.value == "succeeded":
            _otel.time_to_promote.record((now - after.created_at).total_seconds(), {"site": site})


def gauges(*, due: int | None = None, queue_depth: int | None = None) -> None:
    if _otel is None:
        return
    if due is not None:
        _otel.due.set(due)
    if queue_depth is not None:
        _otel.queue_depth.set(queue_depth)
