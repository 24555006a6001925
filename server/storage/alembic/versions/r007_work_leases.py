"""007_work_leases: lease columns on transfers and webhook deliveries.

Runs ``storage.migrations.m007_work_leases``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "007_work_leases"
down_revision: str | None = "006_blob_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
