"""Canary analysis rules: judge the new version against thresholds and against the stable version.

A metric fails only when it breaks its absolute threshold *and* is worse than the stable version by
more than the allowed margin (when the stable version has enough traffic to compare). So an incident
already in production neither blocks a fix nor gets blamed on it. Too little traffic is
*inconclusive*, never a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.domain.model import AnalysisSettings, Evidence, Measurement, VersionStats

Outcome = Literal["pass", "fail", "inconclusive"]
Z_95 = 1.959964


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    numbers: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return "; ".join(self.reasons)


def wilson_lower_bound(errors: int, requests: int, z: float = Z_95) -> float:
    """Lower end of the 95% confidence interval of an error rate (Wilson score)."""
    if requests == 0:
        return 0.0
    p = errors / requests
    denominator = 1 + z * z / requests
    centre = p + z * z / (2 * requests)
    margin = z * math.sqrt(p * (1 - p) / requests + z * z / (4 * requests * requests))
    return max(0.0, (centre - margin) / denominator)


def _merge_stats(held: VersionStats, new: VersionStats) -> VersionStats:
    requests = held.requests + new.requests
    if held.latency_ms is None or held.requests == 0:
        latency = new.latency_ms
    elif new.latency_ms is None or new.requests == 0:
        latency = held.latency_ms
    else:
        latency = (held.latency_ms * held.requests + new.latency_ms * new.requests) / requests
    return VersionStats(requests=requests, errors=held.errors + new.errors, latency_ms=latency)


def accumulate(held: tuple[Evidence, ...], measurements: tuple[Measurement, ...]) -> tuple[Evidence, ...]:
    """Fold this tick's measurements into the step's evidence.

    Window providers report totals since the step began (they replace what was held); sampling
    providers report what they saw since the last tick (added up; latency weighted by requests).
    """
    by_provider = {e.provider: e for e in held}
    for m in measurements:
        before = by_provider.get(m.provider, Evidence(m.provider, latency_statistic=m.latency_statistic))
        if m.cumulative:
            after = Evidence(m.provider, m.canary, m.stable, m.latency_statistic)
        else:
            after = Evidence(
                m.provider,
                _merge_stats(before.canary, m.canary),
                _merge_stats(before.stable, m.stable),
                m.latency_statistic,
            )
        by_provider[m.provider] = after
    return tuple(by_provider[k] for k in sorted(by_provider, key=lambda p: p.value))


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def judge(evidence: Evidence, settings: AnalysisSettings, *, compare_to_stable: bool = True) -> Verdict:
    """The verdict on one provider's evidence."""
    canary, stable = evidence.canary, evidence.stable
    name = evidence.provider.value
    numbers: dict[str, Any] = {
        "provider": name,
        "canaryRequests": canary.requests,
        "canaryErrors": canary.errors,
        "canaryErrorRate": canary.error_rate,
        "canaryLatencyMs": canary.latency_ms,
        "stableRequests": stable.requests,
        "stableErrors": stable.errors,
        "stableErrorRate": stable.error_rate,
        "stableLatencyMs": stable.latency_ms,
        "latencyStatistic": evidence.latency_statistic,
        "minRequests": settings.min_requests,
    }
    if canary.requests == 0:
        return Verdict("inconclusive", (f"{name}: no requests reached the new version yet",), numbers)

    enough = canary.requests >= settings.min_requests
    stable_known = compare_to_stable and settings.relative_to_stable and stable.requests >= settings.min_requests
    failures: list[str] = []

    rate = canary.errors / canary.requests
    error_limit = settings.max_error_rate
    if stable_known and stable.error_rate is not None:
        error_limit = max(error_limit, stable.error_rate + settings.max_error_rate_increase)
    lower = wilson_lower_bound(canary.errors, canary.requests)
    numbers.update(errorRateLimit=error_limit, canaryErrorRateLowerBound=round(lower, 4))
    if (enough and rate > error_limit) or lower > error_limit:
        against = f", stable {_pct(stable.error_rate)}" if stable_known else ""
        failures.append(
            f"{name}: error rate {_pct(rate)} ({canary.errors}/{canary.requests}; 95% lower bound "
            f"{_pct(lower)}) is above the limit {_pct(error_limit)}{against}"
        )

    if canary.latency_ms is not None:
        latency_limit = settings.max_latency_ms
        if stable_known and stable.latency_ms is not None:
            latency_limit = max(latency_limit, stable.latency_ms + settings.max_latency_increase_ms)
        numbers["latencyLimitMs"] = latency_limit
        if enough and canary.latency_ms > latency_limit:
            against = f", stable {stable.latency_ms:.0f} ms" if stable_known and stable.latency_ms else ""
            failures.append(
                f"{name}: {evidence.latency_statistic} latency {canary.latency_ms:.0f} ms is above the "
                f"limit {latency_limit:.0f} ms{against}"
            )

    if failures:
        return Verdict("fail", tuple(failures), numbers)
    if not enough:
        return Verdict(
            "inconclusive",
            (f"{name}: only {canary.requests} of the {settings.min_requests} requests needed to judge",),
            numbers,
        )
    latency = f", {evidence.latency_statistic} {canary.latency_ms:.0f} ms" if canary.latency_ms is not None else ""
    return Verdict(
        "pass",
        (f"{name}: error rate {_pct(rate)} over {canary.requests} requests{latency}: within limits",),
        numbers,
    )


def combine(verdicts: list[Verdict]) -> Verdict:
    """Any failure fails; otherwise any inconclusive is inconclusive; otherwise pass."""
    if not verdicts:
        return Verdict("inconclusive", ("no analysis data yet",))
    for outcome in ("fail", "inconclusive"):
        chosen = [v for v in verdicts if v.outcome == outcome]
        if chosen:
            return Verdict(
                outcome,  # type: ignore[arg-type]
                tuple(r for v in chosen for r in v.reasons),
                {"providers": [v.numbers for v in verdicts]},
            )
    return Verdict("pass", tuple(r for v in verdicts for r in v.reasons), {"providers": [v.numbers for v in verdicts]})
