"""What each Azure Functions trigger does. ``functions/`` only declares the triggers and imports
these modules on a trigger's first invocation, so indexing the app on a cold start loads nothing
but ``azure.functions``."""
