"""Escaping of untrusted text: what GitHub, an HTML page or Slack would show, with hostile inputs."""

from __future__ import annotations

import re

import pytest

from modelherd.escape import (ZWSP, clip, html_text, md_cell, md_code, md_fence, md_html, md_link, md_text,
                              neutralise, one_line, reveal, safe_url, slack_text)

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "**bold** __b__ *i* _i_ ~~s~~ ~s~",
    "[link](javascript:alert(1))",
    "![img](https://evil.example/p.png)",
    "`code` ``more``",
    "<details><summary>x</summary>",
    "<!-- modelherd:plan -->",
    "$\\Huge\\text{APPROVED}$",
    "a | b | c",
    "trailing backslash \\",
    "&lt;b&gt; &amp; &#x41;",
]


def unescape_md(s: str) -> str:
    """What a reader sees of md_text output (backslash escapes and our entities undone, ZWSP dropped)."""
    s = re.sub(r"\\([\\`*_\[\]|~#+=.)-])", r"\1", s)
    s = s.replace("&lt;", "<").replace("&gt;", ">").replace("&#36;", "$").replace("&amp;", "&")
    return s.replace(ZWSP, "")


@pytest.mark.parametrize("text", HOSTILE)
def test_md_text_shows_the_text_as_written(text):
    assert unescape_md(md_text(text)) == text


@pytest.mark.parametrize("text", HOSTILE)
def test_md_text_leaves_no_markup_active(text):
    out = md_text(text)
    assert "<" not in out and ">" not in out
    assert "$" not in out                               # GitHub math would render it
    for ch in "*_`[]|~":                                # every markup character is backslash-escaped
        assert not re.search(rf"(?<!\\){re.escape(ch)}", out.replace("\\\\", "")), ch


def test_md_text_breaks_mentions_team_mentions_and_references():
    out = md_text("ping @channel @alice @acme/risk-ml fixes #123 and GH-45 :white_check_mark:")
    assert "@channel" not in out and "@alice" not in out and "@acme/" not in out
    assert f"@{ZWSP}alice" in out and f"@{ZWSP}acme/risk-ml" in out
    assert "#123" not in out and "GH-45" not in out
    assert ":white_check_mark:" not in out
    assert out.replace(ZWSP, "") == "ping @channel @alice @acme/risk-ml fixes #123 and GH-45 :white\\_check\\_mark:"


def test_md_text_keeps_emails_times_and_plain_numbers_readable():
    assert md_text("12:30:45 on 2025-05-01") == "12:30:45 on 2025-05-01"
    assert md_text("issue 123") == "issue 123"


@pytest.mark.parametrize("start, escaped", [
    ("# heading", "\\# heading"), ("- item", "\\- item"), ("+ item", "\\+ item"), ("= x", "\\= x"),
    ("1. first", "1\\. first"), ("12) first", "12\\) first"), ("> quote", "&gt; quote"),
])
def test_md_text_cannot_start_a_block(start, escaped):
    assert md_text(start) == escaped


def test_md_text_is_one_line():
    assert md_text("a\n\n# b\r\nc\u2028d\te  ") == "a # b c d e"


@pytest.mark.parametrize("char", ["\u202e", "\u202d", "\u2066", "\u200b", "\u2060", "\ufeff", "\x00", "\x1b", "\u00ad"])
def test_invisible_and_bidi_characters_are_revealed(char):
    out = md_text(f"safe{char}name")
    assert char not in out
    assert f"&lt;U+{ord(char):04X}&gt;" in out


def test_reveal_keeps_emoji_sequences_scripts_and_tabs():
    family = "👨\u200d👩\u200d👧"                       # ZWJ sequence
    assert reveal(family) == family
    assert reveal("न\u200dमस्ते ✔\ufe0f 日本語 مرحبا") == "न\u200dमस्ते ✔\ufe0f 日本語 مرحبا"
    assert reveal("a\tb\r\nc") == "a\tb\nc"


def test_lone_surrogates_become_replacement_characters():
    out = md_text("x\ud800y")
    assert out == "x\ufffdy"
    out.encode("utf-8")


def test_very_long_input_is_escaped_whole():
    text = ("@a <b> | `c` *d* #1 :e: \u202e " * 40_000)
    for fn in (md_text, md_cell, md_code, md_fence, html_text, slack_text, md_html):
        fn(text)
    assert len(md_text(text)) > len(text)


def test_clip_counts_characters_and_never_splits_a_combining_sequence():
    assert clip("abcdef", 10) == "abcdef"
    assert clip("abcdef", 4) == "abc…"
    assert len(clip("x" * 10_000, 100)) == 100
    assert clip("ab\u0301cd", 3) == "a…"                # b + combining acute stay together (dropped)
    assert clip(None, 5) == ""


def test_md_cell_keeps_a_table_row_intact():
    cell = md_cell("a | b\nsecond line\\")
    assert "\n" not in cell
    assert "a \\| b<br>second line\\\\" == cell
    assert not re.search(r"(?<!\\)\|", cell.replace("\\\\", ""))


@pytest.mark.parametrize("text, expected", [
    ("plain", "`plain`"),
    ("a`b", "``a`b``"),
    ("``x``", "``` ``x`` ```"),
    ("`", "`` ` ``"),
    (" x ", "`  x  `"),                                 # CommonMark strips one space each side
    ("", "` `"),
    ("line1\nline2", "`line1 line2`"),
])
def test_md_code_chooses_a_fence_longer_than_any_backtick_run(text, expected):
    assert md_code(text) == expected


def test_md_code_does_not_insert_zero_width_spaces_and_escapes_pipes_in_cells():
    assert md_code("@alice #1") == "`@alice #1`"      # code spans are never scanned for mentions
    assert md_code("a|b", cell=True) == "`a\\|b`"
    assert md_code("a|b") == "`a|b`"


def test_md_fence_cannot_be_closed_from_inside():
    body = "```\n````\n<details>\n</details>\n``````` x"
    out = md_fence(body, "diff")
    fence = out.split("\n", 1)[0][:-len("diff")]
    assert fence == "`" * 8
    assert out.endswith("\n" + fence)
    assert out.count(fence) == 2


def test_md_fence_sanitises_the_language_and_reveals_trojan_source():
    out = md_fence("if admin\u202e { }\n", "diff`evil <x>")
    assert out.startswith("```diffevilx\n")
    assert "\u202e" not in out and "<U+202E>" in out
    assert md_fence("", "") == "```\n```"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "/relative", "vbscript:x",
                                 "JaVaScRiPt:alert(1)", "http//no-scheme", "", None])
def test_md_link_refuses_unsafe_urls(url):
    assert md_link("label", url) == "label"
    assert safe_url(url) is None


def test_md_link_encodes_what_would_end_the_link():
    out = md_link("run [1]", "https://mlflow.example/#/runs/a b)c<d>\"e")
    assert out == "[run \\[1\\]](https://mlflow.example/#/runs/a%20b%29c%3Cd%3E%22e)"


def test_md_html_is_for_raw_html_blocks():
    out = md_html("<b>x</b> & @team \\*y\\* $m$")
    assert out == f"&lt;b&gt;x&lt;/b&gt; &amp; @{ZWSP}team \\*y\\* &#36;m&#36;"


def test_html_text_escapes_elements_and_attributes():
    assert html_text("<a href=\"x\" onclick='y'>&</a>") == \
        "&lt;a href=&quot;x&quot; onclick=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
    assert html_text("\u202e") == "&lt;U+202E&gt;"


@pytest.mark.parametrize("text", ["<!channel>", "<!here>", "<@U123ABC>", "<#C123|general>",
                                  "<https://evil.example|click me>", "<!subteam^S123>"])
def test_slack_text_cannot_inject_special_mentions_or_links(text):
    out = slack_text(text)
    assert "<" not in out and ">" not in out
    assert out.startswith("&lt;")


def test_slack_text_escapes_only_what_slack_asks_and_breaks_bare_mentions():
    assert slack_text("a & b < c > d *e*") == "a &amp; b &lt; c &gt; d *e*"
    assert slack_text("@channel @here") == f"@{ZWSP}channel @{ZWSP}here"


def test_neutralise_and_one_line_are_usable_alone():
    assert neutralise("@x #1") == f"@{ZWSP}x #{ZWSP}1"
    assert one_line("  a \n b  ") == "a b"
    assert md_text(None) == "" and md_text(42) == "42"
