"""sla and timing figures

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:54:19.311043
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolution_seconds', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('reply_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('reopen_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('first_responder_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sla_name', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('first_response_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolution_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sla_paused_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sla_paused_seconds', sa.Float(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('first_response_breached', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('resolution_breached', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sla_check_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_tickets_sla_check_at'), ['sla_check_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_tickets_first_responder_id_operators'), 'operators', ['first_responder_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tickets_first_responder_id_operators'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_tickets_sla_check_at'))
        batch_op.drop_column('sla_check_at')
        batch_op.drop_column('escalated_at')
        batch_op.drop_column('resolution_breached')
        batch_op.drop_column('first_response_breached')
        batch_op.drop_column('sla_paused_seconds')
        batch_op.drop_column('sla_paused_since')
        batch_op.drop_column('resolution_due_at')
        batch_op.drop_column('first_response_due_at')
        batch_op.drop_column('sla_name')
        batch_op.drop_column('first_responder_id')
        batch_op.drop_column('reopen_count')
        batch_op.drop_column('reply_count')
        batch_op.drop_column('resolution_seconds')

