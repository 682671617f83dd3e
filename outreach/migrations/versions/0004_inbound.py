"""Inbound messages, and the out-of-office resume time on enrollments

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_message",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("match", sa.String(), nullable=True),
        sa.Column("prospect_id", sa.Integer(), sa.ForeignKey("prospect.id"), nullable=True),
        sa.Column("enrollment_id", sa.Integer(), sa.ForeignKey("enrollment.id"), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("from_email", sa.String(), nullable=True),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(998), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("classification", sa.JSON(), nullable=False),
        sa.Column("effects", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_inbound_message_status", "inbound_message", ["status"])
    op.create_index("ix_inbound_message_prospect_id", "inbound_message", ["prospect_id"])
    with op.batch_alter_table("enrollment") as batch_op:
        batch_op.add_column(sa.Column("resume_at", sa.DateTime(timezone=True), nullable=True))
    # the scheduler's wake-up scan: paused enrollments waiting for a return date
    op.create_index(
        "ix_enrollment_resume",
        "enrollment",
        ["resume_at"],
        postgresql_where=sa.text("resume_at IS NOT NULL"),
        sqlite_where=sa.text("resume_at IS NOT NULL"),
    )
    # replies and bounces are matched to a send by the address it went to
    op.create_index("ix_send_to_email", "send", ["to_email"])


def downgrade() -> None:
    op.drop_index("ix_send_to_email", table_name="send")
    op.drop_index("ix_enrollment_resume", table_name="enrollment")
    with op.batch_alter_table("enrollment") as batch_op:
        batch_op.drop_column("resume_at")
    op.drop_index("ix_inbound_message_prospect_id", table_name="inbound_message")
    op.drop_index("ix_inbound_message_status", table_name="inbound_message")
    op.drop_table("inbound_message")
