"""Customer HTML made safe to show an agent, in three layers.

Mail is the one thing in the CRM that strangers write, so its HTML is treated as hostile:

1. nh3 (ammonia) keeps an allow-list of tags and attributes and re-serialises the document.
   Scripts, styles, forms, frames, objects, `meta` and `base` go; event handlers and
   `javascript:` URLs go; relative URLs (which would point into the CRM itself) go.
2. This module then walks nh3's well-formed output and applies what nh3 cannot express:
   remote images are removed unless the agent asked for them (a tracking pixel must not even
   reach the browser), `cid:` images point at the message's own attachments, `data:` images
   must be raster images, and style declarations calling any CSS function but colours and
   arithmetic are dropped (`url()`, `image-set()`, `expression()`, ...). Style is checked
   after nh3 because ammonia decodes CSS escapes while normalising (`u\\72l(` becomes
   `url(`), so a check before it could be fooled.
3. Quoted replies (`blockquote`, Gmail's `.gmail_quote`, Outlook's `#divRplyFwdMsg` and
   `#appendonsend` and what follows them) are folded into a `<details>`.

The workspace shows the result in a sandboxed iframe with its own strict CSP, so even a
mistake here would meet two more walls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import escape
from html.parser import HTMLParser

import nh3

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption",
        "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div",
        "dl", "dt", "em", "figcaption", "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp",
        "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var", "wbr",
    }
)  # fmt: skip
# Dropped together with everything inside them (the rest keep their text when dropped).
DROPPED_WITH_CONTENT = frozenset(
    {
        "script", "style", "title", "iframe", "frame", "frameset", "object", "embed",
        "applet", "template", "textarea", "select", "noembed", "noframes", "noscript",
        "svg", "math", "xmp", "plaintext",
    }
)  # fmt: skip
GLOBAL_ATTRIBUTES = frozenset(
    {"align", "valign", "dir", "lang", "title", "class", "id", "style", "width", "height",
     "bgcolor", "color"}
)  # fmt: skip
TAG_ATTRIBUTES = {
    "a": {"href", "name"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "table": {"border", "cellpadding", "cellspacing", "summary"},
    "td": {"colspan", "rowspan", "nowrap", "abbr"},
    "th": {"colspan", "rowspan", "nowrap", "abbr", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "font": {"face", "size"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value"},
    "details": {"open"},
}
STYLE_PROPERTIES = frozenset(
    {
        "background", "background-color", "border", "border-bottom", "border-bottom-color",
        "border-bottom-style", "border-bottom-width", "border-collapse", "border-color",
        "border-left", "border-left-color", "border-left-style", "border-left-width",
        "border-radius", "border-right", "border-right-color", "border-right-style",
        "border-right-width", "border-spacing", "border-style", "border-top",
        "border-top-color", "border-top-style", "border-top-width", "border-width", "clear",
        "color", "direction", "display", "float", "font", "font-family", "font-size",
        "font-style", "font-variant", "font-weight", "height", "letter-spacing",
        "line-height", "list-style-type", "margin", "margin-bottom", "margin-left",
        "margin-right", "margin-top", "max-height", "max-width", "min-height", "min-width",
        "opacity", "overflow-wrap", "padding", "padding-bottom", "padding-left",
        "padding-right", "padding-top", "table-layout", "text-align", "text-decoration",
        "text-indent", "text-transform", "vertical-align", "white-space", "width",
        "word-break", "word-spacing", "word-wrap",
    }
)  # fmt: skip
# The CSS functions a declaration may call: colours and arithmetic, none that fetch.
STYLE_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc", "min", "max", "clamp"})
LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:")
REMOTE_SCHEMES = ("http://", "https://")
RASTER_DATA_URL = re.compile(
    r"^data:image/(png|gif|jpeg|jpg|webp|bmp);base64,[a-z0-9+/=\s]+$", re.I
)
VOID_TAGS = frozenset({"br", "hr", "img", "wbr", "col"})
INLINE_TAGS = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "dfn", "em", "font", "i", "kbd",
     "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "tt", "u",
     "var", "wbr", "del", "ins"}
)  # fmt: skip
CSS_FUNCTION = re.compile(r"([a-z_-][a-z0-9_-]*)\s*\(", re.I)
# An Outlook-style reply header as text: "From: ... Sent: ..." or "-----Original Message-----".
REPLY_HEADER_TEXT = re.compile(
    r"^\s*(-{2,}\s*(original message|ursprüngliche nachricht|message d'origine)\s*-{2,}"
    r"|(from|von|de|van)\s*:.{0,400}?\b(sent|gesendet|envoyé|verzonden|date|datum)\s*:)",
    re.I | re.S,
)
ATTRIBUTION_TEXT = re.compile(r"(\bwrote|\bschrieb|a écrit|\bschreef|\bescribió)\s*:?\s*$", re.I)
QUOTE_CLASSES = frozenset({"gmail_quote", "yahoo_quoted", "moz-cite-prefix"})
REPLY_HEADER_IDS = frozenset({"divrplyfwdmsg", "appendonsend"})
SUMMARY = "Show quoted text"

CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(DROPPED_WITH_CONTENT),
    attributes={"*": set(GLOBAL_ATTRIBUTES), **{k: set(v) for k, v in TAG_ATTRIBUTES.items()}},
    url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
    url_relative="deny",
    link_rel="noopener noreferrer",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    filter_style_properties=set(STYLE_PROPERTIES),
    strip_comments=True,
)


class Element:
    """A node of the small tree this module rewrites; children are Elements or text."""

    __slots__ = ("tag", "attrs", "children", "parent")

    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None = None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[Element | str] = []
        self.parent = parent

    def append(self, child: Element | str) -> None:
        if isinstance(child, Element):
            child.parent = self
        self.children.append(child)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").lower().split())

    def text_prefix(self, limit: int = 600) -> str:
        """The element's text, up to `limit` characters (enough to recognise a header)."""
        parts: list[str] = []
        size = 0
        for node in _walk_text(self):
            parts.append(node)
            size += len(node)
            if size >= limit:
                break
        return " ".join("".join(parts).split())[:limit]


def _walk_text(element: Element) -> Iterator[str]:
    for child in element.children:
        if isinstance(child, Element):
            if child.tag in INLINE_TAGS:
                yield from _walk_text(child)
            else:
                yield " "
                yield from _walk_text(child)
                yield " "
        else:
            yield child


class _TreeBuilder(HTMLParser):
    """Parses nh3's output, which is well formed: every element closed, no raw-text tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].append(element)
        if tag not in VOID_TAGS:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def serialize(element: Element) -> str:
    """HTML of the element's children. Only allowed tags and attributes are written, and every
    value is escaped, whatever the tree holds (a last guard behind nh3)."""
    out: list[str] = []
    _serialize_children(element, out)
    return "".join(out)


def _allowed_attribute(tag: str, name: str) -> bool:
    if tag == "a" and name in {"target", "rel"}:
        return True
    return name in GLOBAL_ATTRIBUTES or name in TAG_ATTRIBUTES.get(tag, ())


def _serialize_children(element: Element, out: list[str]) -> None:
    for child in element.children:
        if not isinstance(child, Element):
            out.append(escape(child, quote=False))
            continue
        if child.tag not in ALLOWED_TAGS:
            _serialize_children(child, out)
            continue
        attrs = "".join(
            f' {name}="{escape(value)}"'
            for name, value in child.attrs.items()
            if _allowed_attribute(child.tag, name)
        )
        out.append(f"<{child.tag}{attrs}>")
        if child.tag not in VOID_TAGS:
            _serialize_children(child, out)
            out.append(f"</{child.tag}>")


def iter_elements(element: Element) -> Iterator[Element]:
    """Every element below `element` in document order."""
    for child in list(element.children):
        if isinstance(child, Element):
            yield child
            yield from iter_elements(child)


# --- URLs and style ----------------------------------------------------------------------------


def _image_source(
    src: str, *, remote_images: bool, inline_image_url: Callable[[str], str | None]
) -> str | None:
    """What an image may load: its own attachment, a raster data URL, or (when the agent asked)
    a remote image. Anything else loses its `src`."""
    value = src.strip()
    lowered = value.lower()
    if lowered.startswith("cid:"):
        return inline_image_url(value[4:].strip().strip("<>"))
    if lowered.startswith("data:"):
        return value if RASTER_DATA_URL.match(value) else None
    if lowered.startswith(REMOTE_SCHEMES):
        return value if remote_images else None
    return None


def safe_style(style: str) -> str:
    """The declarations of `style` that call no CSS function but colours and arithmetic."""
    kept = []
    for declaration in style.split(";"):
        if not declaration.strip() or "\\" in declaration:
            continue
        functions = {name.lower() for name in CSS_FUNCTION.findall(declaration)}
        if functions - STYLE_FUNCTIONS:
            continue
        kept.append(declaration.strip())
    return ";".join(kept)


def _apply_url_policy(
    root: Element, *, remote_images: bool, inline_image_url: Callable[[str], str | None]
) -> None:
    for element in iter_elements(root):
        if "style" in element.attrs:
            style = safe_style(element.attrs["style"])
            if style:
                element.attrs["style"] = style
            else:
                del element.attrs["style"]
        if element.tag == "img" and "src" in element.attrs:
            source = _image_source(
                element.attrs["src"],
                remote_images=remote_images,
                inline_image_url=inline_image_url,
            )
            if source:
                element.attrs["src"] = source
            else:
                del element.attrs["src"]
        elif element.tag == "a" and "href" in element.attrs:
            if not element.attrs["href"].strip().lower().startswith(LINK_SCHEMES):
                del element.attrs["href"]


# --- quoted text -------------------------------------------------------------------------------


def _is_reply_header(element: Element) -> bool:
    """Where an Outlook-style reply begins: everything from here on is the quoted thread."""
    if element.attrs.get("id", "").lower() in REPLY_HEADER_IDS:
        return True
    if element.tag in {"div", "p"}:
        return bool(REPLY_HEADER_TEXT.match(element.text_prefix()))
    return False


def _is_quote(element: Element) -> bool:
    return element.tag == "blockquote" or bool(element.classes() & QUOTE_CLASSES)


def _details() -> Element:
    details = Element("details", {"class": "quoted"})
    summary = Element("summary", {})
    summary.append(SUMMARY)
    details.append(summary)
    return details


def _element_siblings_before(element: Element) -> list[Element | str]:
    siblings = element.parent.children
    return siblings[: siblings.index(element)]


def _previous_element(element: Element) -> Element | None:
    """The element just before `element`, skipping whitespace between them."""
    for sibling in reversed(_element_siblings_before(element)):
        if isinstance(sibling, Element):
            return sibling
        if sibling.strip():
            return None
    return None


def _collapse_rest(marker: Element) -> None:
    """Fold `marker` and everything after it in the document into one `<details>`."""
    start = marker
    previous = _previous_element(marker)
    if previous is not None and previous.tag == "hr":
        start = previous
    parent = start.parent
    index = parent.children.index(start)
    details = _details()
    for node in parent.children[index:]:
        details.append(node)
    del parent.children[index:]
    parent.append(details)
    ancestor = parent
    while ancestor.parent is not None:
        siblings = ancestor.parent.children
        after = siblings[siblings.index(ancestor) + 1 :]
        del siblings[siblings.index(ancestor) + 1 :]
        for node in after:
            details.append(node)
        ancestor = ancestor.parent


def _wrap_quote(quote: Element) -> None:
    """Fold one quote (and the "On ..., Anna wrote:" line just before it) into `<details>`."""
    parent = quote.parent
    start = quote
    previous = _previous_element(quote)
    if (
        previous is not None
        and not _is_quote(previous)
        and ATTRIBUTION_TEXT.search(previous.text_prefix(300))
    ):
        start = previous
    index = parent.children.index(start)
    end = parent.children.index(quote)
    details = _details()
    for node in parent.children[index : end + 1]:
        details.append(node)
    parent.children[index : end + 1] = [details]
    details.parent = parent


def _inside_quote(element: Element) -> bool:
    ancestor = element.parent
    while ancestor is not None:
        if ancestor.tag == "details" and "quoted" in ancestor.classes():
            return True
        ancestor = ancestor.parent
    return False


def _shows_something(element: Element) -> bool:
    """Whether text or an image is left outside the folded quotes."""
    for child in element.children:
        if isinstance(child, Element):
            if child.tag == "details" and "quoted" in child.classes():
                continue
            if child.tag == "img" or _shows_something(child):
                return True
        elif child.strip():
            return True
    return False


def _unfold(root: Element) -> None:
    for element in list(iter_elements(root)):
        if element.tag == "details" and "quoted" in element.classes():
            siblings = element.parent.children
            index = siblings.index(element)
            content = element.children[1:]
            for node in content:
                if isinstance(node, Element):
                    node.parent = element.parent
            siblings[index : index + 1] = content


def collapse_quoted(root: Element) -> None:
    """Fold the quoted thread away, unless nothing would be left to read (a forward without
    a comment is all quote, and hiding all of it helps nobody)."""
    marker = next((e for e in iter_elements(root) if _is_reply_header(e)), None)
    if marker is not None:
        _collapse_rest(marker)
    for element in list(iter_elements(root)):
        if _is_quote(element) and not _inside_quote(element):
            _wrap_quote(element)
    if not _shows_something(root):
        _unfold(root)


# --- entry points ------------------------------------------------------------------------------


def sanitize_email_html(
    html: str,
    *,
    remote_images: bool = False,
    inline_image_url: Callable[[str], str | None] = lambda content_id: None,
) -> str:
    """Safe HTML for a message body. `inline_image_url(content_id)` gives the URL of the
    message's attachment with that Content-ID (or None)."""
    root = parse(CLEANER.clean(html))
    _apply_url_policy(root, remote_images=remote_images, inline_image_url=inline_image_url)
    collapse_quoted(root)
    return serialize(root)


REMOTE_IMAGE_HINT = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']?\s*(https?:)?//""", re.I)


def mentions_remote_images(html: str) -> bool:
    """Whether a body seems to have remote images, to offer "Load images" (a cheap look at
    the raw HTML; the sanitizer decides what actually loads)."""
    return bool(REMOTE_IMAGE_HINT.search(html))
