"""The charset of a message's raw 8-bit headers (no RFC 2047 words): the one the message declares, else a detected one."""

from __future__ import annotations

import re
from email.message import Message

from charset_normalizer import from_bytes

from mailticket.mail.decode import codec, is_raw_8bit

# How far down the first parts a declared charset is looked for: the text a person wrote is near the top.
MAX_DEPTH = 8
# Detection reads the start of the message: all its headers and the beginning of the body.
SAMPLE_BYTES = 16 * 1024
# The charsets that mail without a label really comes in, besides UTF-8 and Windows-1252 (which are tried
# first): asking the detector only about these keeps it from picking an exotic one for a short subject.
CANDIDATES = ("gb18030", "shift_jis", "big5", "euc_kr", "euc_jp", "cp1251", "koi8_r", "iso8859_7")
NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
# Portuguese (or any Latin-script) text in Windows-1252 has one to three accented letters together: "ção".
# Chinese or Japanese bytes read as Windows-1252 give long runs, or symbols such as "¶" and "¥".
MAX_LATIN_RUN = 3


def header_charset(raw: bytes, message: Message, values: list[str]) -> str | None:
    """The charset for the raw 8-bit bytes in header `values`: declared by a text part, else detected; None
    means UTF-8 then Windows-1252, the fallbacks for everything else."""
    if not any(map(is_raw_8bit, values)):
        return None
    declared = _declared(message)
    if declared and codec(declared) not in (None, "ascii", "utf-8"):  # "us-ascii" with 8-bit bytes says nothing
        return declared
    sample = raw[:SAMPLE_BYTES]
    if _looks_latin(sample):
        return None
    best = from_bytes(sample, cp_isolation=list(CANDIDATES)).best()
    return best.encoding if best else None


def _declared(message: Message) -> str | None:
    """The charset parameter of the message or of its first text part."""
    part = message
    for _ in range(MAX_DEPTH):
        try:
            charset = part.get_content_charset()
            if charset or not part.is_multipart():
                return charset
            children = part.get_payload()
        except Exception:  # a parameter list or a tree too broken to read declares nothing
            return None
        if not children:
            return None
        part = children[0]
    return None


def _looks_latin(sample: bytes) -> bool:
    try:
        text = sample.decode("cp1252")
    except UnicodeDecodeError:  # bytes Windows-1252 leaves undefined: no Latin text
        return False
    return all(len(run) <= MAX_LATIN_RUN and run.isalpha() for run in NON_ASCII_RUN.findall(text))
