"""Administration: one service behind the admin API and the ``dropline-server``
commands, over tenants, users, API keys, OAuth clients, policies, bans and
client certificates.

May import ``identity``, ``guard``, ``audit``, ``storage`` and the shared modules;
never ``http``.
"""
