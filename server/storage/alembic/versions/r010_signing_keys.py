"""010_signing_keys: signing keys and the master key check value shared by every node.

Runs ``storage.migrations.m010_signing_keys``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "010_signing_keys"
down_revision: str | None = "009_upload_parts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
