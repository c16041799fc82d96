"""The release controller's application package: pure domain, service layer, adapters."""
