"""006_blob_indexes: indexes on the blob ids of entries and revisions.

Runs ``storage.migrations.m006_blob_indexes``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "006_blob_indexes"
down_revision: str | None = "005_undo_and_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
