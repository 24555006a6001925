"""009_upload_parts: the parts of uploads in progress staged in the object store.

Runs ``storage.migrations.m009_upload_parts``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "009_upload_parts"
down_revision: str | None = "008_rate_buckets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
