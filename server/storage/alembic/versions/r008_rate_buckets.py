"""008_rate_buckets: the rate_buckets table shared by every node.

Runs ``storage.migrations.m008_rate_buckets``, as the in-house runner did before Alembic.
"""

from __future__ import annotations

from alembic import op

from dropline.server.storage.migrations import run_migration

revision = "008_rate_buckets"
down_revision: str | None = "007_work_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_migration(op.get_bind(), revision)
