"""Thin HTTP route modules; the work happens in the services they call."""
