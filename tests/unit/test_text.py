"""``p2pchat.text``: peer-controlled text made inert for a terminal, JSON kept exact."""

from __future__ import annotations

import json
import sys

from hypothesis import given
from hypothesis import strategies as st

from p2pchat.text import is_unsafe, json_safe, person_label, terminal_safe


def test_escape_sequences_and_controls_become_visible() -> None:
    hostile = "a\x1b[2J\x1b[Hb\x1b]0;owned\x07c\x9b31md\x00e\x7ff\r"
    shown = terminal_safe(hostile)
    assert shown == "a\\x1b[2J\\x1b[Hb\\x1b]0;owned\\x07c\\x9b31md\\x00e\\x7ff\\x0d"
    assert all(not is_unsafe(ch) for ch in shown)


def test_bidi_overrides_and_format_characters_become_visible() -> None:
    assert terminal_safe("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert terminal_safe("\u2066x\u2069\u200b\ufeff") == "\\u2066x\\u2069\\u200b\\ufeff"
    assert terminal_safe("tag\U000e0041") == "tag\\U000e0041"
    assert terminal_safe("line\u2028sep") == "line\\u2028sep"


def test_ordinary_text_is_unchanged() -> None:
    for text in (
        "hello",
        "café ünïcode",
        "日本語",
        "👍🏽",
        "👨\u200d👩\u200d👧",
        "a\tb\nc",
        "\u0632\u0646\u200c\u0647\u0627",  # Persian, with a non-joiner
    ):
        assert terminal_safe(text) == text


def test_single_line_escapes_newline_and_tab() -> None:
    assert terminal_safe("a\nb\tc", single_line=True) == "a\\x0ab\\x09c"
    assert terminal_safe("a\nb\tc") == "a\nb\tc"


def test_json_safe_keeps_the_value_exact() -> None:
    value = {"text": "x\x1b[2J\x9b\u202e\U000e0041 é 👍\n"}
    encoded = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(encoded) == value
    assert not any(is_unsafe(ch) for ch in encoded)
    assert "é 👍" in encoded  # readable text stays readable


@given(st.text())
def test_no_unsafe_character_survives(text: str) -> None:
    assert not any(is_unsafe(ch) for ch in terminal_safe(text))
    assert "\n" not in terminal_safe(text, single_line=True)
    encoded = json_safe(json.dumps(text, ensure_ascii=False))
    assert json.loads(encoded) == text
    assert not any(is_unsafe(ch) for ch in encoded)


def test_every_control_and_format_code_point_is_unsafe() -> None:
    import unicodedata

    for code in range(sys.maxunicode + 1):
        char = chr(code)
        category = unicodedata.category(char)
        if char in "\n\t" or char in "\u200c\u200d":
            assert not is_unsafe(char)
        elif category in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            assert is_unsafe(char), hex(code)


def test_person_label_marks_where_a_name_comes_from() -> None:
    """Issue 16 item 12: one rule for every screen (README "Names")."""
    assert person_label(name="bob", claimed="Bob", verified=True, fallback="ABCD EFGH") == "bob"
    assert person_label(name="bob", claimed=None, verified=False, fallback="x") == "bob?"
    assert person_label(name=None, claimed="Bob", verified=False, fallback="x") == "~Bob"
    assert person_label(name=None, claimed="Bob", verified=True, fallback="x") == "~Bob"
    assert person_label(name=None, claimed=None, verified=False, fallback="ABCD EFGH") == (
        "ABCD EFGH"
    )
