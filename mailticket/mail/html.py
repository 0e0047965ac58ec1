"""HTML mail made safe to show (nh3) and turned into plain text (stdlib html.parser)."""

from __future__ import annotations

import functools
import re
from html import escape
from html.parser import HTMLParser

import nh3

# Tags we keep: ammonia's default set (formatting, lists, tables, links, images) plus the
# presentational tags old mail clients still emit. Anything else is unwrapped, its text kept.
ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}

# Attributes we keep. Deliberately absent: every on* handler, "style" (CSS can load remote
# content through url() and can overlay the operator's page), "background" and "srcset"
# (remote images by another name), "class" and "id" (they would hook into our page's CSS/JS).
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "colspan", "rowspan", "border"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "font": {"color", "face", "size"},
    "table": {"cellpadding", "cellspacing", "summary"} | _LAYOUT,
    "td": {"headers"} | _LAYOUT,
    "th": {"headers", "scope"} | _LAYOUT,
    "tr": _LAYOUT,
    "img": {"src", "alt", "title", "width", "height", "align", "border"},
}

# Scripts and style sheets are removed together with their content; their text is never mail text.
CONTENT_DROPPED_TAGS = {"script", "style", "title", "head"}

# Schemes allowed by ammonia on href/src before our own filter narrows them further.
URL_SCHEMES = {"http", "https", "mailto", "tel", "cid", "data"}

# Remote content policy: an <img> may only show what travelled inside the message — a MIME part
# referenced by "cid:" or an inline "data:image/..." URL. An http(s) or protocol-relative src is a
# tracking pixel or a remote fetch revealing that (and when) an operator read the mail, so the src
# is dropped and the <img> remains as an empty box with its alt text.
LOCAL_IMAGE_SOURCE = re.compile(r"\s*(cid:|data:image/)", re.IGNORECASE)
# Links may point anywhere the web can, but never at inline data (data:text/html is a script host).
LINK_SCHEME_ALLOWED = re.compile(r"\s*(https?:|mailto:|tel:|#|/|[^:]*$)", re.IGNORECASE)

LINK_REL = "noopener noreferrer"


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "src":
        return value if LOCAL_IMAGE_SOURCE.match(value) else None
    if attribute == "href":
        return value if LINK_SCHEME_ALLOWED.match(value) else None
    return value


_CLEAN_OPTIONS = dict(
    tags=ALLOWED_TAGS,
    clean_content_tags=CONTENT_DROPPED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    attribute_filter=_filter_attribute,
    url_schemes=URL_SCHEMES,
    link_rel=LINK_REL,
    # Links open in a new tab: inside the sandboxed frame they could not load at all.
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)
# nh3 >= 0.3 offers a reusable Cleaner, which saves rebuilding the rule set for every message.
_clean = nh3.Cleaner(**_CLEAN_OPTIONS).clean if hasattr(nh3, "Cleaner") else functools.partial(nh3.clean, **_CLEAN_OPTIONS)


def sanitize(html: str) -> str:
    """The HTML with scripts, handlers, styles and remote content removed; links get rel=noopener."""
    return _clean(html)


def from_text(text: str) -> str:
    """Plain text as HTML that shows it unchanged (for a plain part among HTML ones)."""
    return f"<pre>{escape(text)}</pre>"


# Elements set apart by a blank line in the derived plain text, and those that only start a new line.
PARAGRAPH_TAGS = frozenset("address blockquote dl figure h1 h2 h3 h4 h5 h6 hr ol p pre table ul".split())
LINE_TAGS = frozenset(
    "article aside center dd div dt fieldset figcaption footer form header li main nav section tr".split()
)
# Elements whose content is never text a person wrote to us.
SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
SPACES = re.compile(r"[ \t\r\n\f\v]+")
BLANK_LINES = re.compile(r"\n{3,}")
TAG = re.compile(r"<[^>]*>")


class _TextExtractor(HTMLParser):
    """Collects the visible text, with line breaks where a browser would break, whitespace collapsed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.newlines = 0  # newlines at the end of the output so far; block edges top it up
        self.skip_depth = 0
        self.pre_depth = 0

    def _write(self, text: str) -> None:
        self.chunks.append(text)
        stripped = text.rstrip("\n")
        self.newlines = len(text) - len(stripped) + (self.newlines if not stripped else 0)

    def _break(self, count: int) -> None:
        if self.chunks and self.newlines < count:
            self._write("\n" * (count - self.newlines))

    def _edge(self, tag: str) -> None:
        if tag in PARAGRAPH_TAGS:
            self._break(2)
        elif tag in LINE_TAGS:
            self._break(1)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        if tag == "br":
            self._write("\n")  # every <br> counts: two of them make a blank line
        else:
            self._edge(tag)
        if tag == "li":
            self._write("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in ("td", "th"):
            self._write(" ")
        self._edge(tag)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if not self.pre_depth:
            data = SPACES.sub(" ", data)
            if self.newlines and data.startswith(" "):  # indentation of the source, not text
                data = data.lstrip(" ")
        if data:
            self._write(data)


def to_text(html: str) -> str:
    """Plain text of an HTML document: block elements become line breaks, script/style vanish."""
    try:
        extractor = _TextExtractor()
        extractor.feed(html)
        extractor.close()
        text = "".join(extractor.chunks)
    except Exception:  # html.parser has raised on odd markup in past releases; plain tag stripping is enough
        text = SPACES.sub(" ", TAG.sub(" ", html))
    lines = (line.rstrip().replace("\u00a0", " ") for line in text.split("\n"))
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
