"""HTML mail made safe to show (nh3) and turned into plain text (stdlib html.parser)."""

from __future__ import annotations

import functools
import re
from collections import Counter
from html import escape, unescape
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


# The sanitiser's parser (html5ever) walks the stack of open elements at many tags, so its time grows with the
# square of the nesting: 200,000 nested <div> would take minutes. Real mail nests tables a few dozen deep.
MAX_DEPTH = 256
# html.parser, which lays the text out, takes about 10 µs a tag: a big newsletter has a few thousand of them.
MAX_TAGS = 50_000
TAG_OPEN_OR_CLOSE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)")
VOID_TAGS = frozenset("area base br col embed hr img input keygen link meta param source track wbr".split())
# Tags that end an open element of the same name (a new <p> or <li> closes the last one), as browsers read them,
# when only inline elements lie between the two: a new list or table in between nests instead.
SIBLING_CLOSING_TAGS = frozenset("p li dt dd tr td th option optgroup".split())
INLINE_TAGS = frozenset("a abbr b big cite code em font i label q s small span strike strong sub sup tt u".split())
SIBLING_LOOKBACK = 4
# What is left of HTML too deep to parse: the text between tags. [^<>] keeps the scan linear on "<<<<".
ANY_TAG = re.compile(r"<[^<>]*>")


class TooComplex(ValueError):
    """HTML with more than MAX_TAGS tags or nested deeper than MAX_DEPTH: shown as text instead."""


def complexity(html: str) -> str | None:
    """Why `html` is too complex to parse in reasonable time, or None."""
    if html.count("<") > MAX_TAGS:
        return f"HTML with more than {MAX_TAGS} tags"
    if too_deep(html):
        return f"HTML nested deeper than {MAX_DEPTH} elements"
    return None


def too_deep(html: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the elements of `html` may nest deeper than `limit`, judged in one linear pass over its tags.

    It errs on the deep side (a stray close tag is ignored as a browser would, comments are not skipped): HTML it
    refuses is shown as plain text, never lost.
    """
    stack: list[str] = []
    open_names: Counter[str] = Counter()
    for match in TAG_OPEN_OR_CLOSE.finditer(html):
        name = match.group(2).lower()
        if match.group(1):  # a close tag ends the innermost open element of its name, and all inside it
            if open_names[name]:
                # Each element is pushed once and popped once: the whole pass stays linear.
                while stack:
                    top = stack.pop()
                    open_names[top] -= 1
                    if top == name:
                        break
            continue
        if name in VOID_TAGS:
            continue
        if name in SIBLING_CLOSING_TAGS:
            for back in range(1, min(SIBLING_LOOKBACK, len(stack)) + 1):
                if stack[-back] == name:
                    for top in stack[-back:]:
                        open_names[top] -= 1
                    del stack[-back:]
                    break
                if stack[-back] not in INLINE_TAGS:
                    break
        stack.append(name)
        open_names[name] += 1
        if len(stack) > limit:
            return True
    return False


def strip_tags(html: str) -> str:
    """The text between the tags, for HTML too broken or too deep to parse."""
    return SPACES.sub(" ", unescape(ANY_TAG.sub(" ", html))).strip()


def sanitize(html: str) -> str:
    """The HTML with scripts, handlers, styles and remote content removed; links get rel=noopener.

    Raises TooComplex for HTML too big or too deep (see `complexity`), before the sanitiser spends minutes on it.
    """
    reason = complexity(html)
    if reason is not None:
        raise TooComplex(reason)
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


# The elements the text extractor needs; the rest is unwrapped by nh3 first. nh3's output is well-formed (no
# comment or tag left open), which html.parser reads in linear time: on raw mail it can take quadratic time
# ("<!--" repeated, unclosed).
_STRUCTURE = nh3.Cleaner(
    tags=set(PARAGRAPH_TAGS | LINE_TAGS | {"br", "td", "th", "li", "pre"}), clean_content_tags=set(SKIPPED_TAGS),
    attributes={}, strip_comments=True, link_rel=None,
).clean if hasattr(nh3, "Cleaner") else functools.partial(
    nh3.clean, tags=set(PARAGRAPH_TAGS | LINE_TAGS | {"br", "td", "th", "li", "pre"}),
    clean_content_tags=set(SKIPPED_TAGS), attributes={}, strip_comments=True, link_rel=None)


def to_text(html: str) -> str:
    """Plain text of an HTML document: block elements become line breaks, script/style vanish."""
    if complexity(html) is not None:
        return strip_tags(html)
    try:
        extractor = _TextExtractor()
        extractor.feed(_STRUCTURE(html))
        extractor.close()
        text = "".join(extractor.chunks)
    except Exception:  # html.parser has raised on odd markup in past releases; plain tag stripping is enough
        text = strip_tags(html)
    lines = (line.rstrip().replace("\u00a0", " ") for line in text.split("\n"))
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
