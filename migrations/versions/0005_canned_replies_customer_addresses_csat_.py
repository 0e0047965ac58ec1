"""canned replies, customer addresses, csat, merge, routing

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:23:00.295285
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('canned_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_canned_replies')),
    sa.UniqueConstraint('title', name=op.f('uq_canned_replies_title'))
    )
    op.create_table('customer_addresses',
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_addresses_customer_id_customers')),
    sa.PrimaryKeyConstraint('address', name=op.f('pk_customer_addresses'))
    )
    with op.batch_alter_table('customer_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_addresses_customer_id'), ['customer_id'], unique=False)

    op.create_table('csat',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_csat_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('ticket_id', name=op.f('pk_csat'))
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('routed_by', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_tickets_merged_into_id_tickets'), 'tickets', ['merged_into_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tickets_merged_into_id_tickets'), type_='foreignkey')
        batch_op.drop_column('routed_by')
        batch_op.drop_column('merged_into_id')

    op.drop_table('csat')
    with op.batch_alter_table('customer_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_addresses_customer_id'))

    op.drop_table('customer_addresses')
    op.drop_table('canned_replies')
