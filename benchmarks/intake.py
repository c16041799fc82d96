"""Intake: what checking an event costs (strict JSON, the schema, its proof and the policy), against plain json.loads.

Every event, valid or hostile, is read before anything else happens, so the checks that make bad
input harmless must stay cheap. Baseline, measured in the same run: `json.loads` of the same bytes
(no parser can do less). Cases: a typical event; an event at the 64 KiB limit; and two hostile
bodies (a nesting bomb and a 5,000-digit number) that must be refused at least as fast as they
would be parsed.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from shared.authority.proofs import EventProof, EventVerifier, sign
from shared.domain import policy
from shared.domain.policy import Artifacts, Policy, Source, TargetRule
from shared.domain.schema import MAX_EVENT_BYTES, SchemaError, parse_release_event, strict_json

KEY_ID, KEY = "bench", "bench-signing-key"
SUBSCRIPTION = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345"
EVENT = {
    "releaseId": "web-1.4.2",
    "target": {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "site": "contoso-web"},
    "version": "1.4.2",
    "artifact": {"container": "contoso.azurecr.io/web:1.4.2"},
    "appSettings": {"FEATURE_CHECKOUT_V2": "on"},
    "strategy": {"type": "canary", "steps": [{"weight": 10, "bake": "5m"}, {"weight": 50, "bake": "5m"}]},
    "validation": {"checks": [{"path": "/healthz"}]},
}
POLICY = Policy(
    rules=(
        TargetRule(
            name="web",
            site="contoso-web",
            sources=(Source(hmac_key=KEY_ID),),
            artifacts=Artifacts(registries=("contoso.azurecr.io/web",)),
        ),
    )
)
VERIFIER = EventVerifier({KEY_ID: KEY}, None)


def _large() -> bytes:
    doc = dict(EVENT, appSettings={f"SETTING_{i:03d}": "v" * 500 for i in range(100)})
    raw = json.dumps(doc).encode()
    while len(raw) > MAX_EVENT_BYTES:
        doc["appSettings"] = {k: v[:-20] for k, v in doc["appSettings"].items()}
        raw = json.dumps(doc).encode()
    return raw


def gatekeep(raw: bytes) -> None:
    spec = parse_release_event(raw)
    origin = VERIFIER.origin(raw, EventProof(signature=sign(raw, KEY), key_id=KEY_ID))
    policy.admit(POLICY, spec, origin)


def refused(check: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def run(raw: bytes) -> object:
        try:
            return check(raw)
        except (SchemaError, ValueError, RecursionError):
            return None

    return run


def per_call(fn: Callable[[bytes], object], raw: bytes, seconds: float = 0.4) -> float:
    """Median seconds per call over five timed batches."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn(raw)
        if time.perf_counter() - start > seconds / 5:
            break
        calls *= 2
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn(raw)
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def main() -> None:
    typical = json.dumps(EVENT).encode()
    cases = {
        f"typical event ({len(typical)} B)": (typical, True),
        f"event at the limit ({len(_large()) // 1024} KiB)": (_large(), True),
        "nesting bomb (refused)": (b'{"a":' * 10000 + b"1" + b"}" * 10000, False),
        "5,000-digit number (refused)": (b'{"weight": ' + b"9" * 5000 + b"}", False),
    }
    strict = refused(lambda raw: strict_json(raw, max_bytes=MAX_EVENT_BYTES * 2, what="the event"))
    for name, (raw, valid) in cases.items():
        floor = per_call(refused(json.loads), raw)
        print(f"  {name}")
        print(f"    json.loads (floor)             {floor * 1e6:9.1f} µs   1.00x")
        checked = per_call(strict, raw)
        print(f"    strict JSON                    {checked * 1e6:9.1f} µs   {checked / floor:5.2f}x")
        if valid:
            full = per_call(gatekeep, raw)
            print(f"    schema + HMAC + policy         {full * 1e6:9.1f} µs   {full / floor:5.2f}x")


if __name__ == "__main__":
    main()
