"""Trigger adapters: parse the payload, call the service, map the outcome. No business rules."""
