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
Z_99 = 2.575829
# Judging before the minimum sample needs overwhelming evidence: at least this many errors, and the
# whole 99% interval of the canary's error rate above the limit (and above the stable version's).
EARLY_FAILURE_MIN_ERRORS = 3


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    numbers: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return "; ".join(self.reasons)


def _wilson(errors: int, requests: int, z: float) -> tuple[float, float]:
    if requests == 0:
        return 0.0, 1.0
    p = errors / requests
    denominator = 1 + z * z / requests
    centre = p + z * z / (2 * requests)
    margin = z * math.sqrt(p * (1 - p) / requests + z * z / (4 * requests * requests))
    return max(0.0, (centre - margin) / denominator), min(1.0, (centre + margin) / denominator)


def wilson_lower_bound(errors: int, requests: int, z: float = Z_95) -> float:
    """Lower end of the 95% confidence interval of an error rate (Wilson score)."""
    return _wilson(errors, requests, z)[0]


def wilson_upper_bound(errors: int, requests: int, z: float = Z_95) -> float:
    """Upper end of the 95% confidence interval of an error rate (Wilson score)."""
    return _wilson(errors, requests, z)[1]


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
    """The verdict on one provider's evidence.

    Each metric is *bad* when it breaks its absolute limit and, if the stable version is a
    baseline, is also worse than the stable version by more than the margin. Bad is proven either
    on enough requests (point estimates), or earlier when the evidence is overwhelming (the low end
    of the canary's 95% interval above the limit, and above the high end of the stable version's).
    A metric that breaks its absolute limit while the baseline is still too thin is undecided: the
    step waits for more evidence rather than blaming a fix for an incident already in production.
    """
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
        "maxErrorRate": settings.max_error_rate,
        "maxLatencyMs": settings.max_latency_ms,
    }
    if canary.requests == 0:
        return Verdict("inconclusive", (f"{name}: no requests reached the new version yet",), numbers)

    enough = canary.requests >= settings.min_requests
    baseline = compare_to_stable and settings.relative_to_stable and stable.requests > 0
    stable_enough = baseline and stable.requests >= settings.min_requests
    failures: list[str] = []
    undecided: list[str] = []

    # Error rate.
    rate = canary.errors / canary.requests
    low, _ = _wilson(canary.errors, canary.requests, Z_99 if not enough else Z_95)
    if not enough and canary.errors < EARLY_FAILURE_MIN_ERRORS:
        low = 0.0  # a handful of errors in a handful of requests proves nothing yet
    numbers["canaryErrorRateLowerBound"] = round(low, 4)
    against = ""
    if baseline:
        stable_rate = stable.errors / stable.requests
        _, stable_high = _wilson(stable.errors, stable.requests, Z_99 if not enough else Z_95)
        margin = settings.max_error_rate_increase
        numbers.update(stableErrorRateUpperBound=round(stable_high, 4), maxErrorRateIncrease=margin)
        worse_sure = low > stable_high + margin
        worse_point = stable_enough and rate > stable_rate + margin
        no_worse_point = stable_enough and rate <= stable_rate + margin
        against = f"; stable {_pct(stable_rate)} ({stable.errors}/{stable.requests}), margin {_pct(margin)}"
    else:
        worse_sure = worse_point = True
        no_worse_point = False
    if (low > settings.max_error_rate and worse_sure) or (enough and rate > settings.max_error_rate and worse_point):
        failures.append(
            f"{name}: error rate {_pct(rate)} ({canary.errors}/{canary.requests}; lower bound {_pct(low)}) "
            f"is above the limit {_pct(settings.max_error_rate)}{against}"
        )
    elif enough and rate > settings.max_error_rate and not no_worse_point:
        undecided.append(
            f"{name}: error rate {_pct(rate)} is above {_pct(settings.max_error_rate)} but the stable version "
            f"has only {stable.requests} requests to compare with"
        )

    # Latency (the provider's statistic: p95 for http, the average for azureMonitor).
    if canary.latency_ms is not None and enough and canary.latency_ms > settings.max_latency_ms:
        statistic = evidence.latency_statistic
        if baseline and stable.latency_ms is not None:
            limit = stable.latency_ms + settings.max_latency_increase_ms
            if not stable_enough:
                undecided.append(f"{name}: {statistic} latency above the limit; waiting for the stable version")
            elif canary.latency_ms > limit:
                failures.append(
                    f"{name}: {statistic} latency {canary.latency_ms:.0f} ms is above the limit "
                    f"{settings.max_latency_ms:.0f} ms and {settings.max_latency_increase_ms:.0f} ms over the "
                    f"stable version's {stable.latency_ms:.0f} ms"
                )
        else:
            failures.append(
                f"{name}: {statistic} latency {canary.latency_ms:.0f} ms is above the limit "
                f"{settings.max_latency_ms:.0f} ms"
            )

    if failures:
        return Verdict("fail", tuple(failures), numbers)
    if undecided:
        return Verdict("inconclusive", tuple(undecided), numbers)
    if not enough:
        return Verdict(
            "inconclusive",
            (f"{name}: only {canary.requests} of the {settings.min_requests} requests needed to judge",),
            numbers,
        )
    latency = f", {evidence.latency_statistic} {canary.latency_ms:.0f} ms" if canary.latency_ms is not None else ""
    compared = f" (stable {_pct(stable.error_rate)})" if stable_enough else ""
    return Verdict(
        "pass",
        (f"{name}: error rate {_pct(rate)}{compared} over {canary.requests} requests{latency}: within limits",),
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
