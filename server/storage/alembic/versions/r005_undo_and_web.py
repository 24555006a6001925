"""005_undo_and_web: revision authors and web sessions.

Runs ``storage.migrations.m005_undo_and_web``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "005_undo_and_web"
down_revision: str | None = "004_transfers_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
