"""The controller's authority over events: the policy it enforces and the proofs it accepts."""

from __future__ import annotations

from dataclasses import dataclass

from shared.authority.proofs import EventProof, EventVerifier
from shared.domain.model import Actor
from shared.domain.policy import Origin, Policy


@dataclass
class Gatekeeper:
    policy: Policy
    verifier: EventVerifier

    def origin(self, body: bytes, proof: EventProof, caller: Actor | None) -> Origin:
        return self.verifier.origin(body, proof, caller)
