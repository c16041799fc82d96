"""The App Service adapter's rules that need no wire: which settings a slot gets, which deployment
mode a site allows, and how each error shape Azure sends is read and classified."""

from __future__ import annotations

import pytest

from shared.adapters.appservice import classify_status, deployment_mode, error_details
from shared.adapters.slot_settings import RELEASE_OWNED, keys_that_must_move, owned_keys, release_settings
from shared.domain.model import Artifact, Target, Warmup
from shared.ports import TerminalPlatformError, TransientPlatformError

IMAGE = Artifact("container", "contoso.azurecr.io/web:2")
PACKAGE = Artifact("package", "https://contoso.blob.core.windows.net/builds/web-2.zip")
TARGET = Target("sub", "rg-web", "contoso-web", "staging")


def deploy(current, release_id, settings, artifact=IMAGE, warmup=None):
    return release_settings(
        current, release_id=release_id, version=release_id, artifact=artifact, app_settings=settings, warmup=warmup
    )


def test_a_release_removes_what_the_previous_release_set_and_keeps_what_nobody_released():
    by_hand = {"APPINSIGHTS_KEY": "k", "TZ": "Europe/Berlin"}
    a = deploy(by_hand, "A", {"X": "1", "SHARED": "a"})
    b = deploy(a, "B", {"Y": "2", "SHARED": "b"})
    assert b == {
        **by_hand,
        "Y": "2",
        "SHARED": "b",
        "RELEASE_ID": "B",
        "RELEASE_VERSION": "B",
        RELEASE_OWNED: "SHARED,Y",
    }
    back = deploy(b, "A", {"X": "1", "SHARED": "a"})  # the rollback restores the last good release
    assert "Y" not in back and back["X"] == "1" and back["TZ"] == "Europe/Berlin"
    assert owned_keys(back) == {"X", "SHARED"}


def test_a_package_release_owns_its_package_setting_and_a_container_release_drops_it():
    p = deploy({}, "P", {}, PACKAGE)
    assert p["WEBSITE_RUN_FROM_PACKAGE"] == PACKAGE.ref and "WEBSITE_RUN_FROM_PACKAGE" in owned_keys(p)
    assert "WEBSITE_RUN_FROM_PACKAGE" not in deploy(p, "C", {})


def test_the_swap_warms_the_first_check_up_unless_the_site_sets_its_own_warm_up():
    ours = deploy({}, "A", {}, warmup=Warmup("/healthz", (200,)))
    assert ours["WEBSITE_SWAP_WARMUP_PING_PATH"] == "/healthz" and ours["WEBSITE_SWAP_WARMUP_PING_STATUSES"] == "200"
    theirs = deploy({"WEBSITE_SWAP_WARMUP_PING_PATH": "/warm"}, "A", {}, warmup=Warmup("/healthz", (200,)))
    assert theirs["WEBSITE_SWAP_WARMUP_PING_PATH"] == "/warm" and "WEBSITE_SWAP_WARMUP_PING_STATUSES" not in theirs
    again = deploy(ours, "B", {}, warmup=None)
    assert "WEBSITE_SWAP_WARMUP_PING_PATH" not in again, "a release's warm-up is its own"


def test_the_stamps_and_the_release_settings_must_move_with_the_swap():
    assert keys_that_must_move(PACKAGE, {"X": "1"}) == {
        "RELEASE_ID",
        "RELEASE_VERSION",
        RELEASE_OWNED,
        "X",
        "WEBSITE_RUN_FROM_PACKAGE",
    }


@pytest.mark.parametrize(
    ("kind", "linux", "windows", "artifact", "mode"),
    [
        ("app,linux,container", "DOCKER|x:1", "", IMAGE, "linuxContainer"),
        ("app,container,windows", "", "DOCKER|x:1", IMAGE, "windowsContainer"),
        ("app,linux", "NODE|20-lts", "", PACKAGE, "package"),
        ("app", "", "", PACKAGE, "package"),
    ],
)
def test_the_deployment_mode_follows_the_site(kind, linux, windows, artifact, mode):
    assert deployment_mode(kind, linux, windows, artifact) == mode


@pytest.mark.parametrize(
    ("kind", "linux", "artifact", "says"),
    [
        ("app,linux,container", "SITECONTAINERS", IMAGE, "sidecar"),
        ("app,linux", "PYTHON|3.11", PACKAGE, "cannot run Python apps from a package"),
        ("app,linux", "NODE|20-lts", IMAGE, "turn it into a container app"),
        ("app,linux,container", "DOCKER|x:1", PACKAGE, "cannot run from a package"),
    ],
)
def test_what_cannot_be_done_safely_is_refused_with_what_to_change(kind, linux, artifact, says):
    with pytest.raises(TerminalPlatformError, match=says):
        deployment_mode(kind, linux, "", artifact)


class Body:
    def __init__(self, doc):
        self.doc = doc

    def json(self):
        if isinstance(self.doc, Exception):
            raise self.doc
        return self.doc


@pytest.mark.parametrize(
    "doc",
    [
        {"error": {"code": "SwapFailed", "message": "warm-up failed"}},
        {"Code": "SwapFailed", "Message": "warm-up failed", "Details": []},
        {"Code": "SwapFailed", "Message": None, "Details": [{"Message": "warm-up failed"}]},
    ],
)
def test_both_error_shapes_are_read(doc):
    assert error_details(Body(doc)) == ("SwapFailed", "warm-up failed")


def test_a_body_that_is_not_json_says_nothing():
    assert error_details(Body(ValueError("not json"))) == ("", "")


def test_a_management_lock_is_terminal_and_says_what_to_do():
    error = classify_status(409, "ScopeLocked", "locked", "writing settings", TARGET)
    assert isinstance(error, TerminalPlatformError) and "remove the lock" in error.message


def test_another_operation_in_progress_is_transient():
    assert isinstance(classify_status(409, "Conflict", "busy", "swapping", TARGET), TransientPlatformError)


def test_throttling_carries_the_retry_after_the_platform_asked_for():
    error = classify_status(429, "TooManyRequests", "slow down", "reading", TARGET, retry_after=120)
    assert (
        isinstance(error, TransientPlatformError) and error.retry_after == 120 and "retry after 120s" in error.message
    )


def test_an_expired_token_is_transient_and_a_wrong_audience_is_terminal():
    assert isinstance(classify_status(401, "ExpiredAuthenticationToken", "", "x", TARGET), TransientPlatformError)
    wrong = classify_status(401, "InvalidAuthenticationTokenAudience", "graph", "x", TARGET)
    assert isinstance(wrong, TerminalPlatformError) and "ARM_SCOPE" in wrong.message
