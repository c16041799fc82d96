"""Functional core: no azure.*, no os.environ, no clock, no I/O."""
