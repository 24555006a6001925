"""001_identity: tenants, users and API keys.

Runs ``storage.migrations.m001_identity``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "001_identity"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
