"""004_transfers_webhooks: transfers, shares and webhooks.

Runs ``storage.migrations.m004_transfers_webhooks``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "004_transfers_webhooks"
down_revision: str | None = "003_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
