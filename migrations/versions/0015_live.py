"""the live pages: reply drafts per ticket and operator, and who is viewing which ticket

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 13:00:00

drafts keeps what an operator typed into a ticket's reply form, saved as it is typed, so that a reload, a
release, a lost claim or another browser loses nothing. presence has a row per open ticket page (a live feed
connection), refreshed while it stays open; rows of a crashed process age out.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), primary_key=True),
        sa.Column("operator_id", sa.Integer(), sa.ForeignKey("operators.id"), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("to_addrs", sa.Text(), nullable=True),
        sa.Column("cc_addrs", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "presence",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), nullable=False, index=True),
        sa.Column("operator_id", sa.Integer(), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("presence")
    op.drop_table("drafts")
