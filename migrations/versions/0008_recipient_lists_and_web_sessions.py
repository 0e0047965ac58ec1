"""recipients as lists, server-side web sessions, login throttling out of the operators table

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 08:00:00

- outbox.recipients held "a, b" and was split on commas, semicolons and spaces when sent, so that one address
  with quoted commas became many recipients. It now holds a JSON list of addresses, one element each (JSON type
  on PostgreSQL; SQLite keeps the text column, which SQLAlchemy's JSON type reads and writes).
- web_sessions: a signed-in browser's session, so that logging out (or out everywhere, or being disabled) ends it
  on the server, not only in the cookie.
- operators.failed_logins and locked_until go: a lockout per account let anyone keep an operator out; logins are
  throttled per client in memory now (web/throttle.py).
"""

import json
import re

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SEPARATORS = re.compile(r"[\s,;]+")


def upgrade() -> None:
    conn = op.get_bind()
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("recipients", sa.Text))
    rows = conn.execute(sa.select(outbox.c.id, outbox.c.recipients)).all()
    if rows:
        conn.execute(outbox.update().where(outbox.c.id == sa.bindparam("row")).values(recipients=sa.bindparam("list")),
                     [{"row": row.id, "list": json.dumps([a for a in SEPARATORS.split(row.recipients or "") if a])}
                      for row in rows])
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox ALTER COLUMN recipients TYPE json USING recipients::json")

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"], name=op.f("fk_web_sessions_operator_id_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_operator_id"), ["operator_id"], unique=False)

    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_column("failed_logins")
        batch_op.drop_column("locked_until")


def downgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_operator_id"))
    op.drop_table("web_sessions")

    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox ALTER COLUMN recipients TYPE text USING recipients::text")
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("recipients", sa.Text))
    rows = conn.execute(sa.select(outbox.c.id, outbox.c.recipients)).all()
    if rows:
        conn.execute(outbox.update().where(outbox.c.id == sa.bindparam("row")).values(recipients=sa.bindparam("text")),
                     [{"row": row.id, "text": ", ".join(json.loads(row.recipients or "[]"))} for row in rows])
