"""the survey mail once per ticket (tickets.survey_sent_at); reply figures filled in for old tickets

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:00:00

- Resolving a ticket again sent the survey again. The time it was sent is now kept on the ticket, and taken for
  the tickets already surveyed from their history ("survey-sent" events).
- tickets.reply_count and first_responder_id were never written before this revision; they are now written as
  replies are sent, and filled in here for the tickets before it, from their delivered replies.
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
    delivered = "outbox.ticket_id = tickets.id AND outbox.kind = 'reply' AND outbox.status = 'sent'"
    op.execute(f"UPDATE tickets SET reply_count = (SELECT count(*) FROM outbox WHERE {delivered}), "
               "first_responder_id = (SELECT messages.operator_id FROM outbox JOIN messages "
               f"ON messages.id = outbox.message_id WHERE {delivered} ORDER BY outbox.sent_at LIMIT 1)")


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("survey_sent_at")
