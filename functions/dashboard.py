"""The dashboard under /api/dashboard: server-rendered pages for people signed in through App
Service authentication (reader to look, each button its override's role).

Anonymous at the Functions level because a browser cannot send a function key; the handlers
require the principal App Service sets (see shared/triggers/dashboard.py). Everything is imported
on the first request."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("dashboard")
@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import dashboard

    return dashboard.overview(req)


@bp.function_name("dashboard_release")
@bp.route(route="dashboard/releases/{releaseId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_release(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import dashboard

    return dashboard.release_page(req)


@bp.function_name("dashboard_action")
@bp.route(route="dashboard/releases/{releaseId}/{action}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_action(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import dashboard

    return dashboard.press(req)


@bp.function_name("dashboard_rollout")
@bp.route(route="dashboard/rollouts/{rolloutId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import dashboard

    return dashboard.rollout_page(req)
