"""The Dropline MFT server: REST API, tus uploads, change feed, identity and storage.

It is built in rooms, one subpackage per job; each room's ``__init__`` says what
it owns and what it may import:

- ``http``: the app factory (:func:`dropline.server.http.app.create_app`),
  middleware and the thin routes; the only room that knows HTTP.
- ``files``, ``uploads``, ``transfers``, ``webhooks``: the domain.
- ``identity``, ``guard``, ``audit``, ``admin``: who may do what, and the record of it.
- ``storage``: the database, schema, migrations, blobs and encryption at rest.
- ``cli``: the ``dropline-server`` commands.

Beside the rooms stand three modules every room may use: ``problems`` (the one
error type, RFC 9457), ``settings`` and ``metrics`` (the Prometheus registry).
The server imports nothing from ``sync``, ``sdk``, ``agent`` or ``ui``; its wire
contract is its OpenAPI document plus the tus protocol.
"""
