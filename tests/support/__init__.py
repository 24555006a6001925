"""Shared test helpers: the real server on loopback, in a thread or a process."""
