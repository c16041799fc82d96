"""HTTP probes of slots: readiness after a deploy and the release's validation checks.

Slots are reached on their own host names over HTTPS (App Service serves every slot on TLS).
``ca_bundle`` adds a CA to trust (the local emulator); by default the system's trust store is used.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from shared.domain.model import Check, CheckResult
from shared.ports import RECONCILE_DEADLINE, BudgetSpent

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ProbeResult:
    status: int | None
    body: str
    latency_ms: float
    error: str = ""


class HttpProber:
    """GETs over keep-alive connections, one session per thread (a Session is not thread-safe)."""

    def __init__(self, ca_bundle: str | None = None):
        self._verify: Any = ca_bundle or True
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.verify = self._verify
            session.trust_env = False  # never send probes through a proxy from the environment
            self._local.session = session
        return session

    def get(self, url: str, *, timeout: float, cookies: dict[str, str] | None = None) -> ProbeResult:
        deadline = RECONCILE_DEADLINE.get()
        clipped = False
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BudgetSpent("the reconcile's time budget is spent")
            clipped = remaining < timeout
            timeout = min(timeout, remaining)
        started = time.perf_counter()
        try:
            response = self._session().get(url, timeout=timeout, cookies=cookies, allow_redirects=False, stream=True)
            body = response.raw.read(MAX_BODY, decode_content=True).decode("utf-8", errors="replace")
            response.close()
            return ProbeResult(response.status_code, body, (time.perf_counter() - started) * 1000)
        except requests.Timeout:
            if clipped:
                # Cut short by the reconcile's budget, not by the check's own timeout: that is no
                # verdict on the slot, so it must not count as a failed probe.
                raise BudgetSpent("the reconcile's time budget ran out during a probe") from None
            return ProbeResult(None, "", (time.perf_counter() - started) * 1000, f"no answer within {timeout:g}s")
        except requests.RequestException as exc:
            reason = type(exc).__name__
            return ProbeResult(None, "", (time.perf_counter() - started) * 1000, f"{reason}: {exc}"[:300])


def url_for(host: str, path: str) -> str:
    return f"https://{host}{path}"


class HttpValidator:
    """Runs a release's checks against a slot's own host name."""

    def __init__(self, prober: HttpProber | None = None, *, ca_bundle: str | None = None):
        self.prober = prober or HttpProber(ca_bundle)

    def run_checks(self, host: str, checks: tuple[Check, ...]) -> tuple[CheckResult, ...]:
        results = []
        for check in checks:
            probe = self.prober.get(url_for(host, check.path), timeout=check.timeout_seconds)
            if probe.status is None:
                results.append(CheckResult(check, False, None, probe.latency_ms, probe.error))
                continue
            problems = []
            if probe.status != check.expect_status:
                problems.append(f"status {probe.status}")
            if check.body_contains is not None and check.body_contains not in probe.body:
                problems.append(f"body did not contain {check.body_contains!r}")
            results.append(CheckResult(check, not problems, probe.status, probe.latency_ms, "; ".join(problems)))
        return tuple(results)
