"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against the local
stack: the function app served by the local Functions host, releases in Table Storage on Azurite,
driven through the App Service emulator. A finished canary and a rolled-back one are charted, a
screenshot of each is kept in test-artifacts/, and a button works for an operator and is absent
for a reader.

Chromium comes from the machine (``apt-get install chromium``; .ci/run installs it). Without it
the test is skipped, unless RELEASE_CONTROLLER_REQUIRE_BROWSER=1 (set by CI) makes that a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import azure.functions as func
import pytest

from devstack.funchost import LocalFunctionHost
from shared import bootstrap
from shared.domain.model import Phase
from shared.settings import Settings
from tests.e2e.conftest import bad_canary_event, build_e2e, canary_event
from tests.functions.test_handlers import principal

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# What the Chromium of a closed machine needs to start quietly (no first-run, no Google services).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium():
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)"
        if os.environ.get("RELEASE_CONTROLLER_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    return sync_playwright


@pytest.fixture
def stack(emulator, table_store, azurite, table_prefix, clock):
    """Releases already run on the emulator; the app serving the dashboard over them."""
    e2e = build_e2e(emulator, table_store, clock)
    good = e2e.submit(canary_event(release_id="web-1.1.0", version="1.1.0", steps=(10, 50)))
    e2e.until(good, lambda r: r.is_final, seconds=60)
    bad = e2e.submit(bad_canary_event())
    e2e.until(bad, lambda r: r.is_final, seconds=60)
    running = e2e.submit(canary_event(release_id="web-1.3.0", version="1.3.0", steps=(10, 50)))
    settings = Settings.from_env(
        {
            "RELEASE_STORE_CONNECTION": azurite.connection_string,
            "RELEASE_STORE_TABLE_PREFIX": table_prefix,
            "WEBSITE_AUTH_ENABLED": "True",
            "DASHBOARD_SECRET": "browser-test-key",
        }
    )
    parts = {"store": table_store, "policy_document": {"version": 1, "targets": [{"name": "tests"}]}}
    bootstrap.use(bootstrap.Container(settings=settings, service=e2e.service, parts=parts))
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for module in ("functions.http_api", "functions.dashboard"):
        app.register_functions(__import__(module, fromlist=["bp"]).bp)
    host = LocalFunctionHost(app, {}, function_key="k").start(run_timers=False)
    try:
        yield host, e2e, {"good": good, "bad": bad, "running": running}
    finally:
        host.stop()
        bootstrap.use(None)
        e2e.http.close()


def test_the_dashboard_charts_releases_and_offers_buttons_by_role(stack):
    host, e2e, ids = stack
    assert e2e.phase(ids["good"]) is Phase.SUCCEEDED and e2e.phase(ids["bad"]) is Phase.ROLLED_BACK
    ARTIFACTS.mkdir(exist_ok=True)
    with _chromium()() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            problems: list[str] = []

            def person(name: str, viewport: dict | None = None):
                context = browser.new_context(
                    extra_http_headers={"X-MS-CLIENT-PRINCIPAL": principal(name)},
                    viewport=viewport or {"width": 1100, "height": 900},
                )
                page = context.new_page()
                page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                return page

            olga = person("olga")
            olga.goto(f"{host.url}/api/dashboard")
            assert olga.locator("section.site h2").first.inner_text().startswith("contoso-web")
            assert olga.locator(".stopped-total").inner_text() == "1"

            for name in ("good", "bad"):
                release_id = ids[name]
                kept = len(e2e.service.measurements(release_id)[1])
                assert kept > 0
                olga.goto(f"{host.url}/api/dashboard/releases/{release_id}")
                chart = olga.locator("svg#timeline")
                assert chart.is_visible() and chart.bounding_box()["width"] > 300
                assert olga.locator("svg#timeline circle.point.share").count() == kept
                assert olga.locator("svg#timeline circle.point.canary").count() == 2 * kept  # error rate, latency
                assert olga.locator("#measurements tr").count() == kept + 1
                olga.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
            assert olga.locator("#phase").inner_text() == "rolledBack"
            assert olga.locator("#measurements .verdict-fail").count() >= 1

            rita = person("rita", {"width": 390, "height": 844})  # a reader, on a phone
            rita.goto(f"{host.url}/api/dashboard/releases/{ids['running']}")
            assert rita.locator("#status").is_visible()
            assert rita.locator("#actions").count() == 0, "a reader sees no button"
            width = rita.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width} px wide on a 390 px phone"
            rita.screenshot(path=str(ARTIFACTS / "dashboard-phone-reader.png"), full_page=True)

            olga.goto(f"{host.url}/api/dashboard/releases/{ids['running']}")
            olga.locator("details[data-action=pause] summary").click()
            olga.locator("details[data-action=pause] input[name=reason]").fill("holding for the 3 a.m. check")
            olga.locator("details[data-action=pause] button[type=submit]").click()
            olga.wait_for_url(f"**/api/dashboard/releases/{ids['running']}?done=pause")
            assert "Paused" in olga.locator("#notice").inner_text()
            assert e2e.service.get(ids["running"]).paused
            assert olga.locator("details[data-action=resume]").count() == 1
            assert problems == []
        finally:
            browser.close()
