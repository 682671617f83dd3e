"""Count sender limits by when a send started

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send") as batch_op:
        batch_op.drop_index("ix_send_sender_created")
        batch_op.create_index("ix_send_sender_started", ["sender_email", "started_at"])


def downgrade() -> None:
    with op.batch_alter_table("send") as batch_op:
        batch_op.drop_index("ix_send_sender_started")
        batch_op.create_index("ix_send_sender_created", ["sender_email", "created_at"])
