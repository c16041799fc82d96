"""Azure Functions entry point: creates the app and registers the blueprints. No logic, no I/O."""

import azure.functions as func

from functions.dashboard import bp as dashboard
from functions.http_api import bp as http_api
from functions.reconcile_timer import bp as reconcile_timer
from functions.reconcile_worker import bp as reconcile_worker
from functions.release_events import bp as release_events

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(release_events)
app.register_functions(reconcile_timer)
app.register_functions(reconcile_worker)
app.register_functions(http_api)
app.register_functions(dashboard)
