"""Local stand-ins for the cloud, for the demo and the tests. Never deployed."""
