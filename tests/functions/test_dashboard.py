"""The dashboard's pages and buttons through the indexed functions, over Azurite: who sees what,
which buttons each role gets, and the checks that keep another site from pressing them."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import azure.functions as func

from shared.domain.model import Phase
from tests.functions.test_handlers import RID, principal, roll_back_a_bad_canary, submit, tick


def page(indexed, name, path, *, who="rita", route=None, params=None, method="GET", body=b"", headers=None):
    sent = {"X-MS-CLIENT-PRINCIPAL": principal(who)} if who else {}
    sent.update(headers or {})
    req = func.HttpRequest(
        method,
        f"http://localhost:7071{path}",
        headers=sent,
        params=params or {},
        route_params=route or {},
        body=body,
    )
    response = indexed[name].get_user_function()(req)
    return response, (response.get_body() or b"").decode()


def release_page(indexed, who="rita", **kw):
    return page(indexed, "dashboard_release", f"/api/dashboard/releases/{RID}", who=who, route={"releaseId": RID}, **kw)


def press(indexed, action, *, who="olga", reason="checked the graphs", token=None, headers=None):
    if token is None:
        _, html = release_page(indexed, who=who)
        found = re.search(r'name="token" value="([^"]+)"', html)
        token = found.group(1) if found else ""
    form = urlencode({"token": token, "reason": reason}).encode()
    sent = {"Host": "localhost:7071", "Sec-Fetch-Site": "same-origin", **(headers or {})}
    return page(
        indexed,
        "dashboard_action",
        f"/api/dashboard/releases/{RID}/{action}",
        who=who,
        route={"releaseId": RID, "action": action},
        method="POST",
        body=form,
        headers={k: v for k, v in sent.items() if v is not None},
    )


def test_the_overview_lists_each_site_with_its_releases_and_the_ledger(indexed, app):
    roll_back_a_bad_canary(indexed, app)
    response, html = page(indexed, "dashboard", "/api/dashboard")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "contoso-web" in html and f"/api/dashboard/releases/{RID}" in html
    assert '<strong class="stopped-total">1</strong>' in html
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


def test_a_release_page_shows_the_status_the_chart_and_every_measurement(indexed, app):
    roll_back_a_bad_canary(indexed, app)
    release, kept = app.service.measurements(RID)
    response, html = release_page(indexed)
    assert response.status_code == 200
    assert release.phase is Phase.ROLLED_BACK and release.reason in html.replace("&#39;", "'")
    assert f'data-points="{len(kept)}"' in html
    assert html.count('class="point share"') == len(kept)
    assert html.count("<tr>") >= len(kept)
    assert "error rate" in html and "rollback.started" in html


def test_a_reader_sees_no_button_and_cannot_press_one(indexed, app):
    submit(indexed)
    tick(indexed, app, 5)
    _, html = release_page(indexed, who="rita")
    assert 'id="actions"' not in html
    response, body = press(indexed, "pause", who="rita", token="0." + "0" * 64)
    assert response.status_code == 403 and "operator" in body
    assert not app.service.get(RID).paused


def test_an_operator_pauses_from_the_page_and_it_is_audited_with_the_reason(indexed, app):
    submit(indexed)
    tick(indexed, app, 5)
    _, html = release_page(indexed, who="olga")
    assert 'data-action="pause"' in html and 'data-action="rollback"' in html
    assert 'data-action="approve"' not in html, "olga is not an approver"
    response, _ = press(indexed, "pause", who="olga", reason="looking at a spike")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/api/dashboard/releases/{RID}?done=pause"
    release = app.service.get(RID)
    assert release.paused
    assert any("looking at a spike" in e.entry.message for e in app.service.audit(RID))


def test_a_form_from_another_site_or_without_a_valid_token_changes_nothing(indexed, app):
    submit(indexed)
    tick(indexed, app, 5)
    cross, body = press(indexed, "pause", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and "another site" in body
    foreign = press(indexed, "pause", headers={"Sec-Fetch-Site": None, "Origin": "https://evil.example"})[0]
    assert foreign.status_code == 403
    nowhere = press(indexed, "pause", headers={"Sec-Fetch-Site": None})[0]
    assert nowhere.status_code == 403
    forged = press(indexed, "pause", token="1700000000." + "a" * 64)[0]
    assert forged.status_code == 403
    _, html = release_page(indexed, who="rita")  # a token handed to someone else is not olga's
    stolen = re.search(r'name="token" value="([^"]+)"', html)
    assert stolen is None
    no_reason = press(indexed, "pause", reason="  ")[0]
    assert no_reason.status_code == 400
    assert not app.service.get(RID).paused


def test_the_dashboard_needs_a_signed_in_person(indexed, app):
    response, body = page(indexed, "dashboard", "/api/dashboard", who=None)
    assert response.status_code == 401 and "Sign-in required" in body
    nobody = page(indexed, "dashboard", "/api/dashboard", who="nobody")[0]
    assert nobody.status_code == 403


def test_an_unknown_or_malformed_release_id_is_a_404_page_that_echoes_nothing(indexed, app):
    missing = page(indexed, "dashboard_release", "/api/dashboard/releases/nope", route={"releaseId": "nope"})[0]
    assert missing.status_code == 404
    bad = page(indexed, "dashboard_release", "/api/dashboard/releases/%3Cx%3E", route={"releaseId": "<x>"})
    assert bad[0].status_code == 404 and "<x>" not in bad[1]


def test_stored_text_is_escaped_on_the_page(indexed, app):
    submit(indexed)
    tick(indexed, app, 5)
    press(indexed, "pause", reason='<script>alert("x")</script><img src=x onerror=alert(1)>')
    _, html = release_page(indexed)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_a_rollout_has_its_page_with_every_site(indexed, app):
    from tests.builders import CANARY_EVENT, SUBSCRIPTION, body, signed

    doc = {k: v for k, v in CANARY_EVENT.items() if k not in ("releaseId", "target")}
    doc.update(
        rolloutId="fleet-9",
        targets=[
            {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "site": s} for s in ("web-one", "web-two")
        ],
        waves=[{"sites": ["web-one"]}, {"sites": ["web-two"]}],
    )
    raw = body(doc)
    assert app.service.ingest_rollout(raw, message_id=None, source="test", proof=signed(raw)).outcome == "created"
    overview = page(indexed, "dashboard", "/api/dashboard")[1]
    assert 'href="/api/dashboard/rollouts/fleet-9"' in overview
    response, html = page(
        indexed, "dashboard_rollout", "/api/dashboard/rollouts/fleet-9", route={"rolloutId": "fleet-9"}
    )
    assert response.status_code == 200
    assert "web-one" in html and "web-two" in html and 'href="/api/dashboard/releases/fleet-9:web-one"' in html
    missing = page(indexed, "dashboard_rollout", "/api/dashboard/rollouts/nope", route={"rolloutId": "nope"})[0]
    assert missing.status_code == 404
