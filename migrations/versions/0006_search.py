"""full-text search over messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 11:05:00.000000

SQLite: an FTS5 table `message_search` over the subject, text, sender address and sender name of every message
(inbound, outbound and notes alike), with the unicode61 tokenizer folding accents ("devolucao" finds
"devolução"). It is an external-content table (the text stays only in `messages`) kept in step by triggers, so
ingest and the reply and note paths write nothing more. A later batch migration that rebuilds `messages` drops
these triggers with the old table: it must create them again (CREATE_TRIGGERS below) and rebuild the index.

PostgreSQL: a GIN index over the expression `mailticket_search_document(subject, text, from_addr, from_name)`,
an IMMUTABLE SQL function: to_tsvector('simple', ...) of the lower-cased text with accents folded by
translate(), and '@', '.' and '_' made spaces so that an address is its words on both stores. `unaccent` would
need an extension a shop's database may not allow, and a stored folded column would double the text and
ask ingest to fill it. Only the first DOCUMENT_CHARS of a message's text are indexed: a tsvector has a size
limit, and an index error on INSERT would refuse the mail. `mailticket_search_fold(text)` folds a query the same
way. Both functions call only built-ins, so a dump restores with an empty search_path.
"""

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# Accented Latin letters (U+00C0..U+024F that decompose to an ASCII letter) and their plain lower-case letter;
# then the separators that become spaces. Frozen here: mailticket.service.search only calls the functions.
ACCENTED = "ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂăĄąĆćĈĉĊċČčĎďĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĴĵĶķĹĺĻļĽľŃńŅņŇňŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžƠơƯưǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǦǧǨǩǪǫǬǭǰǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗȘșȚțȞȟȦȧȨȩȪȫȬȭȮȯȰȱȲȳ" + "@._"
PLAIN = "aaaaaaceeeeiiiinooooouuuuyaaaaaaceeeeiiiinooooouuuuyyaaaaaaccccccccddeeeeeeeeeegggggggghhiiiiiiiiijjkkllllllnnnnnnoooooorrrrrrssssssssttttuuuuuuuuuuuuwwyyyzzzzzzoouuaaiioouuuuuuuuuuaaaaggkkoooojggnnaaaaaaeeeeiiiioooorrrruuuusstthhaaeeooooooooyy" + "   "
DOCUMENT_CHARS = 100_000

FOLD = f"translate(lower(value), '{ACCENTED}', '{PLAIN}')"

PG_UPGRADE = (
    f"""CREATE FUNCTION mailticket_search_fold(value text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {FOLD} $$""",
    f"""CREATE FUNCTION mailticket_search_document(subject text, body text, address text, name text)
        RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT to_tsvector('simple'::regconfig, translate(lower(
            coalesce(subject, '') || ' ' || left(coalesce(body, ''), {DOCUMENT_CHARS}) || ' ' ||
            coalesce(address, '') || ' ' || coalesce(name, '')), '{ACCENTED}', '{PLAIN}')) $$""",
    # Building the index reads every message already there.
    """CREATE INDEX ix_messages_search ON messages
        USING gin (mailticket_search_document(subject, text, from_addr, from_name))""",
)
PG_DOWNGRADE = (
    "DROP INDEX IF EXISTS ix_messages_search",
    "DROP FUNCTION IF EXISTS mailticket_search_document(text, text, text, text)",
    "DROP FUNCTION IF EXISTS mailticket_search_fold(text)",
)

SQLITE_COLUMNS = "subject, text, from_addr, from_name"
CREATE_TRIGGERS = (
    f"""CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
        INSERT INTO message_search(rowid, {SQLITE_COLUMNS})
        VALUES (new.id, new.subject, new.text, new.from_addr, new.from_name); END""",
    f"""CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO message_search(message_search, rowid, {SQLITE_COLUMNS})
        VALUES ('delete', old.id, old.subject, old.text, old.from_addr, old.from_name); END""",
    # Only a change of the indexed columns touches the index: moving a message to another ticket (merge) does not.
    f"""CREATE TRIGGER message_search_update AFTER UPDATE OF {SQLITE_COLUMNS} ON messages BEGIN
        INSERT INTO message_search(message_search, rowid, {SQLITE_COLUMNS})
        VALUES ('delete', old.id, old.subject, old.text, old.from_addr, old.from_name);
        INSERT INTO message_search(rowid, {SQLITE_COLUMNS})
        VALUES (new.id, new.subject, new.text, new.from_addr, new.from_name); END""",
)
SQLITE_UPGRADE = (
    f"""CREATE VIRTUAL TABLE message_search USING fts5({SQLITE_COLUMNS}, content='messages', content_rowid='id',
        tokenize = 'unicode61 remove_diacritics 2')""",
    *CREATE_TRIGGERS,
    # Index the messages already there.
    "INSERT INTO message_search(message_search) VALUES ('rebuild')",
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS message_search_update",
    "DROP TRIGGER IF EXISTS message_search_delete",
    "DROP TRIGGER IF EXISTS message_search_insert",
    "DROP TABLE IF EXISTS message_search",
)


def _run(statements: dict[str, tuple[str, ...]]) -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in statements:
        raise NotImplementedError(f"no full-text search for the {dialect} database")
    for statement in statements[dialect]:
        op.execute(statement)


def upgrade() -> None:
    _run({"sqlite": SQLITE_UPGRADE, "postgresql": PG_UPGRADE})


def downgrade() -> None:
    _run({"sqlite": SQLITE_DOWNGRADE, "postgresql": PG_DOWNGRADE})
