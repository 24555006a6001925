"""003_security: audit trail, events, OAuth, policies, bans, client certificates, tenant keys.

Runs ``storage.migrations.m003_security``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "003_security"
down_revision: str | None = "002_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
