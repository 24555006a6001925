"""Alembic's environment and revisions for the server's schema (see ``storage.migrations``)."""
