"""Hostile messages of about 1 MB, each aimed at one step of reading mail that could take time out of proportion."""

from __future__ import annotations

SIZE = 1_000_000
HEAD = "To: support@shop.example\r\nMessage-ID: <{name}@bomb.example>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n"


def _mail(name: str, headers: str, body: str = "hello\r\n", sender: str = "ana@customer.example") -> bytes:
    return (f"From: {sender}\r\n" + HEAD.format(name=name) + headers + "\r\n" + body).encode("utf-8", "surrogateescape")


def _times(unit: str, size: int = SIZE) -> str:
    return unit * (size // len(unit))


def _attachment(name: str, disposition: str) -> bytes:
    return _mail(name, 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
                 "--b\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n"
                 f"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: {disposition}\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n")


def _html(name: str, html: str) -> bytes:
    return _mail(name, "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n", html)


def bombs() -> dict[str, bytes]:
    """Name -> raw message."""
    return {
        "from-without-at": _mail("from-without-at", "Subject: a\r\n", sender=_times("a")),
        "from-spaces": _mail("from-spaces", "Subject: a\r\n", sender="a" + _times(" ") + "b@c.example"),
        "from-quoted-list": _mail("from-quoted-list", "Subject: a\r\n",
                                  sender='"x,' + _times("v0@v.io,", SIZE - 40) + 'y"@attacker.test'),
        "from-parentheses": _mail("from-parentheses", "Subject: a\r\n", sender=_times("(")),
        "to-many": _mail("to-many", "Cc: " + _times("c@d.example, ") + "\r\nSubject: a\r\n"),
        "filename": _attachment("filename", f'attachment; filename="{_times("a")}.pdf"'),
        "filename-slashes": _attachment("filename-slashes", f'attachment; filename="{_times("a/")}"'),
        "rfc2231-continuations": _attachment(
            "rfc2231-continuations",
            "attachment; " + "; ".join(f"filename*{i}*=a%41" for i in range(SIZE // 20))),
        "content-type-parameters": _mail("content-type-parameters",
                                         "Content-Type: text/plain; " + _times('a="b;c"; ') + "\r\n"),
        "html-nested-lists": _html("html-nested-lists", _times("<ul><li>")),
        "html-nested-divs": _html("html-nested-divs", _times("<div>")),
        "html-unclosed-comments": _html("html-unclosed-comments", _times("<!--x")),
        "html-open-brackets": _html("html-open-brackets", _times("<")),
        "subject-encoded-words": _mail("subject-encoded-words", "Subject: " + _times("=?utf-8?q?a") + "\r\n"),
        "subject-one-word": _mail("subject-one-word", "Subject: " + _times("x") + "\r\n"),
        "references": _mail("references", "References: " + _times("<a") + "\r\n"),
        "many-ids": _mail("many-ids", "References: " + _times("<r@x> ") + "\r\n"),
        "many-headers": _mail("many-headers", _times("X-A: b\r\n")),
        "many-parts": _mail("many-parts", 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
                            _times("--b\r\nContent-Type: image/png\r\n\r\nx\r\n") + "--b--\r\n"),
        "deep-multipart": _mail("deep-multipart", 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
                                _times('--b\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n')),
        "odd-header-lines": _mail("odd-header-lines", _times("no colon here\r\n") + "Subject: a\r\n"),
    }
