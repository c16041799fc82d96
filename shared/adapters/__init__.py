"""Adapters: the I/O edges of the controller (storage, App Service, probes, notifiers)."""
