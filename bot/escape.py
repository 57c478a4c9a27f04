"""Escaping of untrusted text for the places modelherd writes to: GitHub Markdown, HTML and Slack mrkdwn.

Everything a manifest, a registry or a user wrote (descriptions, tags, run names, metric names, policy
messages, diffs) passes through one of these functions before it reaches a comment or a message, so that
it shows as the plain text it is: no HTML, no links, no formatting, no table breakage, and nobody gets
notified.  All functions are pure and run in linear time.

GitHub works in two stages, and both need defusing:

1. The Markdown parser (cmark-gfm).  Backslash escapes and HTML entities stop emphasis, links, images,
   raw HTML, tables, strikethrough and math (``$…$``).
2. Filters over the rendered HTML's *text*: ``@user`` / ``@org/team`` mentions, ``#123`` and ``GH-123``
   references (which also post cross-references on other issues) and ``:emoji:`` shortcodes.  A backslash
   no longer exists at that stage, so a zero-width space is put after the ``@``, ``#`` or ``:`` instead,
   the technique Renovate and Dependabot use; the text looks the same and matches nothing.

Invisible and direction-changing characters (bidi overrides, zero-width spaces, control characters) are
shown as ``<U+202E>`` so a name cannot pretend to be another one (see :func:`reveal`).
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import quote, urlsplit

ZWSP = "\u200b"  # zero-width space: breaks mentions, references and shortcodes without showing

# Characters shown as <U+XXXX>: C0/C1 controls (tab and newline excepted), bidi controls, zero-width and
# other invisible format characters, Hangul fillers used for "blank" names, tag characters.  ZWJ and
# ZWNJ (U+200C/D) and variation selectors stay: emoji sequences and several scripts need them.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200e\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff0-\ufffb\ufffe\uffff\U000e0000-\U000e007f]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_NEWLINES = re.compile("\r\n|[\r\x85\u2028\u2029\x0b\x0c]")
_WHITESPACE_RUN = re.compile(r"[ \t\n]+")

_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_ISSUE_REF = re.compile(r"#(?=[0-9])")
_GH_REF = re.compile(r"\b(GH)-(?=[0-9])", re.IGNORECASE)
_SHORTCODE = re.compile(r":(?=[a-z0-9_+-]*[a-z_+-][a-z0-9_+-]*:)", re.IGNORECASE)

# Backslash escapes for inline Markdown; <, >, & and $ as entities (GitHub's math ignores entities).
_MD_INLINE = str.maketrans({
    "\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|", "~": "\\~",
    "<": "&lt;", ">": "&gt;", "&": "&amp;", "$": "&#36;",
})
_ORDERED = re.compile(r"[0-9]{1,9}([.)])")  # an ordered list item when it opens a line
_HTML_IN_MD = str.maketrans({"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&#x27;",
                             "$": "&#36;"})
_SLACK = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_BACKTICKS = re.compile(r"`+")
_FENCE_LANG = re.compile(r"[^A-Za-z0-9_+.#-]")
_URL_SAFE = ":/?#[]@!$&'*+,;=%-._~"


def _text(s: object) -> str:
    """``None`` → ``""``; anything else → ``str``."""
    return "" if s is None else str(s)


def reveal(s: object) -> str:
    """Normalise line endings and make invisible characters visible as ``<U+XXXX>``.

    Bidi overrides (Trojan Source), zero-width characters and control characters could make one name
    look like another, or reorder what a reviewer reads.  Lone surrogates become U+FFFD so the result
    can always be encoded as UTF-8.  Tabs and newlines are kept.
    """
    t = _NEWLINES.sub("\n", _text(s))
    t = _SURROGATE.sub("\ufffd", t)
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", t)


def neutralise(s: str) -> str:
    """Break ``@mentions``, ``#123`` / ``GH-123`` references and ``:emoji:`` with a zero-width space.

    Apply to text that is already revealed (:func:`reveal`), or the inserted spaces would be revealed.
    """
    s = _MENTION.sub("@" + ZWSP, s)
    s = _ISSUE_REF.sub("#" + ZWSP, s)
    s = _GH_REF.sub(lambda m: m.group(1) + ZWSP + "-", s)
    return _SHORTCODE.sub(":" + ZWSP, s)


def one_line(s: object) -> str:
    """Revealed text on one line: runs of spaces, tabs and newlines become one space; ends trimmed."""
    return _WHITESPACE_RUN.sub(" ", reveal(s)).strip()


def clip(s: object, n: int, ellipsis: str = "…") -> str:
    """At most ``n`` characters of ``s``, ending with ``ellipsis`` when cut.

    Clip raw text *before* escaping it, so that an escape sequence is never cut in half.  The cut does
    not leave a combining mark or joiner dangling from the previous character.
    """
    t = _text(s)
    if len(t) <= n:
        return t
    cut = max(0, n - len(ellipsis))
    while cut > 0 and (unicodedata.combining(t[cut]) or t[cut] in "\u200c\u200d\ufe0f"):
        cut -= 1
    return t[:cut].rstrip() + ellipsis


def md_text(s: object) -> str:
    """Inline Markdown text that renders exactly as ``s`` on GitHub, on one line.

    No emphasis, links, images, HTML, code, strikethrough, math, tables or block starts; no mentions,
    issue references or emoji shortcodes.  Line breaks become spaces; surrounding whitespace is trimmed.
    """
    return _escape_block_start(neutralise(one_line(s)).translate(_MD_INLINE))


def _escape_block_start(t: str) -> str:
    """Escape what would open a block at the start of a line: ``#``, ``-``, ``+``, ``=``, ``1.``, ``1)``."""
    m = _ORDERED.match(t)
    if m:
        return t[:m.start(1)] + "\\" + t[m.start(1):]
    return "\\" + t if t[:1] in ("#", "-", "+", "=") else t


def md_cell(s: object) -> str:
    """Text for one GitHub table cell: :func:`md_text` per line, lines joined with ``<br>``.

    Pipes are escaped (GitHub unescapes ``\\|`` inside cells, code spans included) and a trailing
    backslash cannot swallow the cell delimiter, because backslashes are escaped too.
    """
    lines = [md_text(line) for line in reveal(s).split("\n")]
    return "<br>".join(line for line in lines if line)


def md_code(s: object, *, cell: bool = False) -> str:
    """An inline code span showing ``s`` verbatim (on one line), whatever backticks it holds.

    The fence is one backtick longer than the longest run inside; a space pads content that starts or
    ends with a backtick (CommonMark strips exactly one such space).  ``cell=True`` escapes pipes for a
    table cell.  Code spans are not scanned for mentions or references, so none are inserted.
    """
    t = _WHITESPACE_RUN.sub(" ", reveal(s).replace("\t", " "))
    if not t.strip():
        t = t or " "
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(t)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if (t[0] == "`" or t[-1] == "`" or (t[0] == " " and t[-1] == " " and t.strip())) else ""
    if cell:
        t = t.replace("|", "\\|")
    return f"{fence}{pad}{t}{pad}{fence}"


def md_fence(s: object, lang: str = "") -> str:
    """A fenced code block holding ``s`` verbatim, for text of any size and content.

    The fence is at least three backticks and longer than any backtick run inside, so nothing can close
    it early; ``lang`` keeps only characters an info string may hold.  Invisible characters are revealed
    (a diff is exactly where a bidi override would hide).
    """
    t = reveal(s)
    if t and not t.endswith("\n"):
        t += "\n"
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(t)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{_FENCE_LANG.sub('', _text(lang))[:32]}\n{t}{fence}"


def safe_url(url: object) -> str | None:
    """``url`` percent-encoded for a Markdown link destination, or ``None`` unless it is http(s)."""
    t = _text(url).strip()
    try:
        parts = urlsplit(t)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(t, safe=_URL_SAFE)


def md_link(text: object, url: object) -> str:
    """``[text](url)`` with escaped text, or just the escaped text when ``url`` is not http(s).

    ``javascript:``, ``data:`` and relative URLs are refused; parentheses, spaces, quotes, angle
    brackets and non-ASCII in the URL are percent-encoded so it cannot end the link early.
    """
    label = md_text(text) or md_text(url)
    href = safe_url(url)
    return f"[{label}]({href})" if href else label


def md_html(s: object) -> str:
    """Text for inside raw HTML in GitHub Markdown (a ``<summary>``), on one line.

    Markdown is not parsed there, so backslashes would show; entities are used instead, and mentions,
    references and shortcodes are broken as in :func:`md_text`.
    """
    return neutralise(one_line(s)).translate(_HTML_IN_MD)


def html_text(s: object) -> str:
    """Text for an HTML document (element content or a quoted attribute value)."""
    return html.escape(reveal(s), quote=True)


def slack_text(s: object) -> str:
    """Text for Slack mrkdwn: ``&``, ``<`` and ``>`` escaped as Slack asks.

    ``<!channel>``, ``<@U123>``, ``<#C123>`` and ``<http://x|label>`` all need a literal ``<``, so none
    can be injected.  Bare ``@here`` / ``@channel`` are also broken with a zero-width space, in case the
    message is ever sent with ``link_names``.  Slack has no escape for ``*bold*`` and the like; such text
    may show formatted but cannot link, mention or notify.
    """
    return _MENTION.sub("@" + ZWSP, reveal(s).translate(_SLACK))
