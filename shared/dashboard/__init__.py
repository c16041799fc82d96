"""The operator's view: server-rendered HTML pages over the same reads as the JSON API.

Loaded only when a dashboard route is asked for (Jinja2 included), never at import of the app."""
