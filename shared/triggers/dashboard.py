"""What the dashboard's routes do (declared in functions/dashboard.py).

The dashboard is for people signed in through App Service authentication: its routes take no
function key (a browser cannot send one), so the principal App Service sets — which clients cannot
forge — is required, and a function key alone is never enough, even in key-only mode. Each page
and each button needs the role its JSON route needs. Buttons are forms, checked for cross-site
forgery (forms.py); the answer to a button is a redirect back to the release's page."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote, urlencode

import azure.functions as func

from shared import bootstrap
from shared.api import Problem, check_release_id, parse_action, reason_problem, rollout_view
from shared.authority.principals import ACTION_ROLES
from shared.dashboard import forms, pages
from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import Actor, ActorKind
from shared.ports import ReleaseNotFound, RolloutNotFound, StoreUnavailable
from shared.service import TooManyConflicts
from shared.triggers.http import _allowed, _caller

log = logging.getLogger("release_controller.dashboard")

HTML = "text/html"
OVERVIEW_LIMIT = 2000
NOTICES = {
    "pause": "Paused: the release holds where it is until someone resumes it.",
    "resume": "Resumed.",
    "rollback": "Rollback recorded: the controller is restoring the stable version.",
    "promote": "Promoted: the current step is complete.",
    "promote-full": "Promotion to full traffic recorded.",
    "approve": "Approved.",
    "retry": "A new release was created from the same plan.",
    "release-site": "The site is free for the next release.",
    "ignore-schedule": "The release no longer waits for its site's windows and freezes.",
}


def _page(status: int, body: str, script_nonce: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    out = {
        "Content-Security-Policy": pages.content_security_policy(script_nonce),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        **(headers or {}),
    }
    return func.HttpResponse(body, status_code=status, mimetype=HTML, charset="utf-8", headers=out)


def _person(req: func.HttpRequest, action: str) -> Actor:
    actor = _caller(req)
    if actor.kind is not ActorKind.PERSON:
        raise Problem(
            401,
            "not-authenticated",
            "Sign-in required",
            "the dashboard is for people signed in through App Service authentication; a function key is not a person",
        )
    return _allowed(actor, action)


def _serve(req: func.HttpRequest, work: Callable[[str], func.HttpResponse]) -> func.HttpResponse:
    """Answer with ``work``'s page, or a page that says what went wrong (never a stack trace)."""
    script_nonce = pages.nonce()
    try:
        return work(script_nonce)
    except Problem as p:
        status, title, detail = p.status, p.title, p.detail
    except forms.FormRefused as exc:
        status, title, detail = 403, "The form was refused", str(exc)
    except ReleaseNotFound as exc:
        status, title, detail = 404, "No such release", str(exc)
    except RolloutNotFound as exc:
        status, title, detail = 404, "No such rollout", str(exc)
    except OverrideRefused as exc:
        status, title, detail = 409, "Not allowed in the release's current state", exc.reason
    except TooManyConflicts:
        status, title, detail = 503, "The release is changing", "try again in a moment"
    except StoreUnavailable as exc:
        log.error("storage unavailable: %s", exc)
        status, title, detail = 503, "Storage is unavailable", "try again shortly"
    except Exception:
        log.exception("unhandled error serving the dashboard")
        status, title, detail = 500, "Internal error", "the error is in the function's logs"
    return _page(status, pages.problem(status, title, detail, None, script_nonce=script_nonce), script_nonce)


def overview(req: func.HttpRequest) -> func.HttpResponse:
    def work(script_nonce: str) -> func.HttpResponse:
        viewer = _person(req, "dashboard")
        service = bootstrap.get_service()
        summaries, ledger = service.overview(limit=OVERVIEW_LIMIT)
        fleet = service.rollouts(limit=20)
        body = pages.index(
            summaries, ledger, viewer, script_nonce=script_nonce, now=service.clock.now(), rollouts=fleet
        )
        return _page(200, body, script_nonce)

    return _serve(req, work)


def release_page(req: func.HttpRequest) -> func.HttpResponse:
    def work(script_nonce: str) -> func.HttpResponse:
        viewer = _person(req, "dashboard")
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        service = bootstrap.get_service()
        release, measurements = service.measurements(release_id)
        now = service.clock.now()
        secret = bootstrap.container().settings.dashboard_secret
        done = req.params.get("done", "")
        body = pages.release(
            release,
            service.site_for_view(release),
            service.audit(release_id),
            measurements,
            viewer,
            forms.buttons(release, viewer, now),
            form_token=forms.token(secret, viewer, release_id),
            script_nonce=script_nonce,
            now=now,
            notice=NOTICES.get(done),
        )
        return _page(200, body, script_nonce)

    return _serve(req, work)


def press(req: func.HttpRequest) -> func.HttpResponse:
    """A button: check the form came from the dashboard, record the override, go back to the page."""

    def work(script_nonce: str) -> func.HttpResponse:
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        action = parse_action(req.route_params.get("action", ""))
        viewer = _person(req, action.value)
        assert action.value in ACTION_ROLES
        forms.check_same_origin(req.headers)
        try:
            form = forms.parse_form(req.get_body() or b"")
        except ValueError as exc:
            raise Problem(400, "invalid-form", "The form is not valid", str(exc)) from None
        secret = bootstrap.container().settings.dashboard_secret
        forms.check_token(secret, viewer, release_id, form.get("token", ""))
        reason = form.get("reason")
        problem = reason_problem(reason)
        if problem:
            raise Problem(400, "invalid-form", "The reason is missing", f"reason {problem}")
        assert reason is not None
        result = bootstrap.get_service().override(release_id, action, actor=viewer, reason=reason.strip())
        target = f"/api/dashboard/releases/{quote(result.id)}?{urlencode({'done': action.value})}"
        return _page(303, "", script_nonce, {"Location": target})

    return _serve(req, work)


def rollout_page(req: func.HttpRequest) -> func.HttpResponse:
    def work(script_nonce: str) -> func.HttpResponse:
        viewer = _person(req, "dashboard")
        rollout_id = check_release_id(req.route_params.get("rolloutId", ""))
        service = bootstrap.get_service()
        r = service.get_rollout(rollout_id)
        view = rollout_view(r, service.rollout_children(r))
        body = pages.rollout(view, viewer, script_nonce=script_nonce, now=service.clock.now(), final=r.is_final)
        return _page(200, body, script_nonce)

    return _serve(req, work)
