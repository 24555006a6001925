"""Webhooks: a tenant's subscriptions and their secrets, and the dispatcher that
fans the events outbox out and delivers each message signed, with retries.

May import ``guard`` (the outbound SSRF guard), ``identity``, ``audit``, ``storage``
and the shared modules; never ``http``.
"""
