"""Claims in their own table; a covering index for due steps

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dispatch_claim",
        # no foreign key: checking one takes a share lock on the enrollment row, which
        # writes to its page, the very cost this table is here to avoid
        sa.Column("enrollment_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dispatch_claim_until", "dispatch_claim", ["until"])
    with op.batch_alter_table("enrollment") as batch_op:
        batch_op.drop_column("dispatches")  # claims count attempts now
    op.drop_index("ix_enrollment_due", table_name="enrollment")
    active = sa.text("state = 'active'")
    if op.get_bind().dialect.name == "postgresql":
        # the due scan reads only the index: no enrollment page is touched to find work
        op.create_index(
            "ix_enrollment_due",
            "enrollment",
            ["next_run_at", "id"],
            postgresql_include=["step"],
            postgresql_where=active,
        )
    else:
        op.create_index(
            "ix_enrollment_due", "enrollment", ["next_run_at", "id"], sqlite_where=active
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollment") as batch_op:
        batch_op.add_column(
            sa.Column("dispatches", sa.Integer(), nullable=False, server_default="0")
        )
    op.drop_index("ix_enrollment_due", table_name="enrollment")
    op.create_index(
        "ix_enrollment_due",
        "enrollment",
        ["next_run_at"],
        postgresql_where=sa.text("state = 'active'"),
        sqlite_where=sa.text("state = 'active'"),
    )
    op.drop_index("ix_dispatch_claim_until", table_name="dispatch_claim")
    op.drop_table("dispatch_claim")
