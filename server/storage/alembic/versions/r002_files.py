"""002_files: entries, revisions, the change feed and uploads.

Runs ``storage.migrations.m002_files``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "002_files"
down_revision: str | None = "001_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
