"""OAuth2 logins: oauth_tokens, oauth_pending, mailbox_status

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 12:00:00

- oauth_tokens: each OAuth2 authorization (a mailbox's, or the relay's), its tokens encrypted with a key derived
  from web.secret_key, and its state; in the database so that every instance uses and refreshes the same ones.
- oauth_pending: a browser authorization under way (state, PKCE verifier), bound to the admin's web session.
- mailbox_status: the last successful poll and the last failure of each mailbox, for `mailbox status`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_tokens",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("authorized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notice_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_oauth_tokens")),
    )
    op.create_table(
        "oauth_pending",
        sa.Column("state", sa.String(length=128), nullable=False),
        sa.Column("authorization", sa.String(length=128), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_oauth_pending")),
    )
    op.create_table(
        "mailbox_status",
        sa.Column("mailbox", sa.String(length=128), nullable=False),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("login_refused", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_status")),
    )


def downgrade() -> None:
    op.drop_table("mailbox_status")
    op.drop_table("oauth_pending")
    op.drop_table("oauth_tokens")
