"""The parser against real-world mail from other projects' test suites (../shared/corpus, when present)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from mailticket.mail.parse import parse

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no mail corpus at {CORPUS}")

STALWART = CORPUS / "stalwart-mail-parser" / "resources" / "eml"
# Files in the corpus that are not mail: expectations, licences, media, and imaptest's IMAP scripts.
NOT_MAIL_SUFFIXES = {".json", ".md", ".png", ".wav", ".gitignore", ".gitattributes"}
NOT_MAIL_NAMES = {"LICENSE", "LICENSE.txt", "MIT", "MIT-LICENSE", "COPYING", "README", "Apache-2.0.txt", "MIT.txt"}
MBOX_SEPARATOR = re.compile(rb"^From [^\r\n]*\r?\n", re.MULTILINE)

# Stalwart expectations we disagree with on purpose.
STALWART_DISAGREEMENTS = {
    "legacy/035.eml": "C:\\TEMP\\x.png: stalwart drops the backslashes as quoted-pairs, we keep the base name",
    "legacy/039.eml": "C:\\TEMP\\x.png: stalwart drops the backslashes as quoted-pairs, we keep the base name",
    "thirdparty/015.eml": "stalwart lets the first enclosed message swallow its two sibling attachments; we keep all three",
}
# Names we make up for parts that have none: "attachment.<ext>", and "<subject>.eml" for enclosed messages.
MADE_UP_NAME = re.compile(r"^attachment(\.\w+)?$|\.eml$")


def _messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix == ".mbox":
        return [message for message in MBOX_SEPARATOR.split(data) if message.strip()]
    return [data]


def _mail_files(source: str) -> list[Path]:
    files = []
    for path in sorted((CORPUS / source).rglob("*")):
        if not path.is_file() or path.suffix in NOT_MAIL_SUFFIXES or path.name in NOT_MAIL_NAMES:
            continue
        if source == "imaptest" and path.suffix != ".mbox":
            continue
        files.append(path)
    return files


SOURCES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []


@pytest.mark.parametrize("source", SOURCES)
def test_every_corpus_message_parses_without_raising(source):
    files = _mail_files(source)
    assert files, f"no mail found under {source}"
    failures, count = [], 0
    for path in files:
        for number, raw in enumerate(_messages(path), 1):
            count += 1
            try:
                msg = parse(raw)
            except Exception as exc:  # collect them all: one report is worth more than the first failure
                failures.append(f"{path.relative_to(CORPUS)}#{number}: {exc!r}")
                continue
            assert msg.size == len(raw) and msg.message_id
    assert not failures, "\n".join(failures)
    assert count >= len(files)


def test_imaptest_mboxes_split_into_their_messages():
    messages = _messages(CORPUS / "imaptest" / "src" / "tests" / "thread.mbox")
    assert [parse(raw).message_id for raw in messages] == ["a@b", "b@b", "c@b"]
    assert parse(messages[1]).references == ("a@b", "c@b")


def _header(part: dict, name: str):
    return next((h["value"] for h in part["headers"] if h["name"] == name), None)


def _expected(result: dict) -> tuple[str, str, list[str]]:
    """Subject, From address and attachment names from a stalwart JSON result."""
    top = result["parts"][0]
    subject = _header(top, "subject")
    subject = subject.get("Text", "") if isinstance(subject, dict) else ""
    sender = _header(top, "from")
    address = ""
    if isinstance(sender, dict) and "Address" in sender:
        mailboxes = sender["Address"].get("List") or [m for g in sender["Address"].get("Group", []) for m in g.get("addresses", [])]
        address = (mailboxes[0].get("address") or "") if mailboxes else ""
    names = []
    for index in result["attachments"]:
        part = result["parts"][index]
        for header, param in (("content_disposition", "filename"), ("content_type", "name")):
            value = _header(part, header)
            attributes = (value or {}).get("ContentType", {}).get("attributes") or [] if isinstance(value, dict) else []
            found = [a["value"] for a in attributes if a["name"] == param]
            if found:
                # We keep only the base name of a path (see _safe_filename).
                names.append(re.sub(r".*[/\\]", "", found[0]))
                break
    return subject, address.lower(), names


def _like(expected: str) -> re.Pattern:
    """Stalwart reads raw 8-bit headers as lossy UTF-8 (U+FFFD); we read them as Windows-1252."""
    return re.compile("".join("." if c == "\ufffd" else re.escape(c) for c in " ".join(expected.split())))


def _stalwart_cases():
    if not STALWART.is_dir():
        return []
    cases = []
    for result in sorted(STALWART.rglob("*.json")):
        if result.name.endswith(".crlf.json"):
            continue
        name = str(result.with_suffix(".eml").relative_to(STALWART))
        cases.append(pytest.param(name, id=name))
    return cases


@pytest.mark.parametrize("name", _stalwart_cases())
def test_subject_sender_and_attachment_names_agree_with_stalwart(name):
    eml = STALWART / name
    subject, address, names = _expected(json.loads(eml.with_suffix(".json").read_text()))
    msg = parse(eml.read_bytes())
    assert _like(subject).fullmatch(msg.subject), (subject, msg.subject)
    # An address without a domain ("<moderator>") is nobody we could answer: we keep no address then.
    assert msg.from_addr == (address if "@" in address else "")
    ours = [a.filename for a in msg.attachments]
    if name in STALWART_DISAGREEMENTS:
        # Subject and sender still agree; the attachment names are where we decided otherwise (see the list).
        assert len(ours) >= len(names)
        return
    missing = Counter(names) - Counter(ours)
    for expected in list(missing):  # names with U+FFFD in them match loosely
        if any(_like(expected).fullmatch(our) for our in ours):
            del missing[expected]
    assert not missing, (names, ours)
    unexplained = [n for n in ours if n not in names and not MADE_UP_NAME.search(n) and not any(_like(e).fullmatch(n) for e in names)]
    assert not unexplained, (names, ours)


def test_no_stalwart_disagreement_is_stale():
    for name in STALWART_DISAGREEMENTS:
        assert (STALWART / name).is_file(), name
