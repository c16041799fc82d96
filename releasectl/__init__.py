"""releasectl: publish release events to the controller and follow them to their end, from a CI
pipeline or a terminal. Not deployed with the Function App."""
