"""Webhook gates are outbound requests an attacker would love to aim: they go over https only, to
public addresses (or a private range the policy names for that gate), never follow a redirect, and
only a short reason from their answer is kept."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.appservice.certs import make_tls_files
from shared.adapters.analysis import WebhookGate
from shared.domain.model import ProviderKind, ProviderSpec, Release, SlotObservation, WebhookStage
from tests.builders import spec
from tests.e2e.gates import SECRET, SECRET_SETTING, Gate

RELEASE = Release(spec=spec(), created_at=datetime(2026, 11, 26, tzinfo=UTC))
SLOTS = SlotObservation("old", "new", True, 0.0, "slot.example", "prod.example")


@pytest.fixture(scope="module")
def tls():
    with tempfile.TemporaryDirectory() as folder:
        yield make_tls_files(Path(folder))


def ask(tls, gate_spec: ProviderSpec):
    return WebhookGate({SECRET_SETTING: SECRET}, ca_bundle=str(tls.ca_cert)).ask(
        RELEASE, SLOTS, gate_spec, WebhookStage.BEFORE_TRAFFIC
    )


def spec_of(url: str, networks: tuple[str, ...] = ()) -> ProviderSpec:
    return ProviderSpec(
        ProviderKind.WEBHOOK,
        gate="gate",
        url=url,
        secret_setting=SECRET_SETTING,
        allow_networks=networks,
        timeout_seconds=2,
    )


def test_a_gate_on_a_range_the_policy_names_is_asked_and_its_reason_is_kept_short(tls):
    gate = Gate(tls, {"beforeTraffic": (200, b'{"reason": "' + b"ok " * 500 + b'", "secret": "not kept"}')})
    try:
        result = ask(tls, spec_of(gate.url, ("127.0.0.0/8",)))
    finally:
        gate.close()
    assert result.passed and gate.calls == [("beforeTraffic", True)]
    assert len(result.detail) < 260 and "not kept" not in result.detail


def test_a_gate_on_loopback_the_policy_does_not_allow_is_never_asked(tls):
    gate = Gate(tls)
    try:
        result = ask(tls, spec_of(gate.url))
    finally:
        gate.close()
    assert not result.passed and "loopback, link-local or private" in result.detail
    assert gate.calls == [], "no request was made"


@pytest.mark.parametrize(
    "url", ["https://169.254.169.254/latest/meta-data/", "https://[::1]:9/x", "https://10.0.0.5/x"]
)
def test_metadata_and_private_addresses_are_refused(tls, url):
    result = ask(tls, spec_of(url))
    assert not result.passed and "the policy does not allow" in result.detail


def test_a_gate_that_is_not_https_is_refused(tls):
    assert "not https" in ask(tls, spec_of("http://example.com/gate")).detail


def test_a_redirect_is_never_followed(tls):
    gate = Gate(tls, {"beforeTraffic": "redirect"})
    try:
        result = ask(tls, spec_of(gate.url, ("127.0.0.0/8",)))
    finally:
        gate.close()
    assert not result.passed and "redirects are not followed" in result.detail


def test_a_gate_with_no_key_is_not_asked(tls):
    result = WebhookGate({}, ca_bundle=str(tls.ca_cert)).ask(
        RELEASE,
        SLOTS,
        replace(spec_of("https://127.0.0.1:9/"), allow_networks=("127.0.0.0/8",)),
        WebhookStage.EACH_STEP,
    )
    assert not result.passed and "no key" in result.detail
