"""the survey mail once per ticket: tickets.survey_sent_at

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:00:00

Resolving a ticket again sent the survey again. The time it was sent is now kept on the ticket, and taken for
the tickets already surveyed from their history ("survey-sent" events).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("survey_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE tickets SET survey_sent_at = (SELECT min(events.at) FROM events "
               "WHERE events.ticket_id = tickets.id AND events.kind = 'survey-sent')")


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("survey_sent_at")
