"""Test data: release events and a ready-wired service over in-memory adapters."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from shared.adapters.memory import (
    FakeClock,
    InMemoryReleaseStore,
    InMemorySlotPlatform,
    RecordingNotifier,
    ScriptedAnalyzer,
    ScriptedValidator,
)
from shared.authority.gatekeeper import Gatekeeper
from shared.authority.proofs import EventProof, EventVerifier, sign
from shared.domain.model import Actor, ActorKind, Role, Target
from shared.domain.policy import Artifacts, NamedGate, Policy, Source, TargetRule
from shared.domain.schema import spec_from_document
from shared.service import ReleaseService

SUBSCRIPTION = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345"

CANARY_EVENT: dict[str, Any] = {
    "releaseId": "web-1.4.2",
    "target": {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "site": "contoso-web"},
    "version": "1.4.2",
    "artifact": {"container": "contoso.azurecr.io/web:1.4.2"},
    "appSettings": {"FEATURE_CHECKOUT_V2": "on"},
    "strategy": {"type": "canary", "steps": [{"weight": 10, "bake": "5m"}, {"weight": 50, "bake": "10m"}]},
    "validation": {"checks": [{"path": "/healthz", "expectStatus": 200}], "consecutiveSuccesses": 2},
    "metadata": {"commit": "7f3c9e1", "requestedBy": "alice@contoso.com"},
}

BLUE_GREEN_EVENT: dict[str, Any] = {
    "releaseId": "api-2.0.0",
    "target": {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-api", "site": "contoso-api", "slot": "green"},
    "version": "2.0.0",
    "artifact": {"package": "https://contoso.blob.core.windows.net/builds/api-2.0.0.zip"},
    "strategy": {"type": "blueGreen", "guard": "10m"},
    "validation": {"consecutiveSuccesses": 1},
}


def event(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base if base is not None else CANARY_EVENT)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def spec(doc: dict[str, Any] | None = None, **changes: Any):
    return spec_from_document(event(doc, **changes))


def target(doc: dict[str, Any] | None = None) -> Target:
    return spec(doc).target


@dataclass
class Harness:
    service: ReleaseService
    store: InMemoryReleaseStore
    platform: InMemorySlotPlatform
    validator: ScriptedValidator
    analyzer: ScriptedAnalyzer
    notifier: RecordingNotifier
    clock: FakeClock

    def tick(self, release_id: str, seconds: float = 30) -> None:
        self.clock.advance(seconds)
        self.service.reconcile(release_id)

    def phase(self, release_id: str) -> str:
        return self.service.get(release_id).phase.value


# -- authority: what the tests release under -------------------------------------------------

TEST_KEY_ID = "tests"
TEST_KEY = "signing-key-for-the-tests-only"


def policy_for_tests(gates: dict[str, NamedGate] | None = None, **rule: Any) -> Policy:
    """Every site of the tests' subscription, from the tests' signing key or a person with the
    submitter role, images from contoso.azurecr.io or docker.io, packages from Azure blob storage;
    two-person rule on."""
    options: dict[str, Any] = {
        "subscription": SUBSCRIPTION,
        "sources": (Source(hmac_key=TEST_KEY_ID), Source(person_role=Role.SUBMITTER)),
        "artifacts": Artifacts(
            registries=("contoso.azurecr.io", "docker.io"), package_hosts=("*.blob.core.windows.net",)
        ),
    }
    options.update(rule)
    return Policy(rules=(TargetRule("tests", **options),), gates=gates or {}, digest="tests")


def authority_for_tests(policy: Policy | None = None, keys: dict[str, str] | None = None) -> Gatekeeper:
    return Gatekeeper(policy or policy_for_tests(), EventVerifier(keys or {TEST_KEY_ID: TEST_KEY}, None))


def signed(raw: bytes) -> EventProof:
    return EventProof(signature=sign(raw, TEST_KEY), key_id=TEST_KEY_ID)


def ingest(service: ReleaseService, raw: bytes, **options: Any) -> Any:
    """Publish ``raw`` as CI would: signed with the tests' key."""
    options.setdefault("proof", signed(raw))
    return service.ingest(raw, **options)


def person(name: str, *roles: Role, groups: tuple[str, ...] = ()) -> Actor:
    """A signed-in person (every role unless some are named)."""
    return Actor(
        id=f"aad:tests/{name}",
        name=name,
        kind=ActorKind.PERSON,
        roles=frozenset(roles or Role),
        groups=frozenset(groups),
    )


def harness(store: Any = None, **platform_options: Any) -> Harness:
    store = store if store is not None else InMemoryReleaseStore()
    platform = InMemorySlotPlatform(**platform_options)
    validator = ScriptedValidator()
    analyzer = ScriptedAnalyzer()
    notifier = RecordingNotifier()
    clock = FakeClock()
    service = ReleaseService(store, platform, validator, analyzer, notifier, clock, authority=authority_for_tests())
    return Harness(service, store, platform, validator, analyzer, notifier, clock)
