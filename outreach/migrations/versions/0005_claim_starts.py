"""Claims count the starts a worker never finished, so a step that kills its worker is
parked; sends record the moment they are handed to the mail server

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dispatch_claim") as batch_op:
        batch_op.add_column(sa.Column("starts", sa.Integer(), nullable=False, server_default="0"))

    with op.batch_alter_table("send") as batch_op:
        batch_op.add_column(
            sa.Column("handed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # rows from before this column: whether they were handed over is not known, so assume so
    op.execute(sa.text("UPDATE send SET handed = true"))
    if op.get_bind().dialect.name == "postgresql":
        # a send row is updated twice after its insert (handed, then sent): room on its page
        # lets both be HOT updates, which write no entry in any of the table's five indexes
        op.execute(sa.text("ALTER TABLE send SET (fillfactor = 50)"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("ALTER TABLE send RESET (fillfactor)"))
    with op.batch_alter_table("send") as batch_op:
        batch_op.drop_column("handed")
    with op.batch_alter_table("dispatch_claim") as batch_op:
        batch_op.drop_column("starts")
