"""The confusables table is generated from Unicode's data, current, and what the compiler reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shield.automata import confusables_data
from shield.automata.normalize import CONFUSABLES, letter_set, word_code_points

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_table_is_what_the_generator_writes() -> None:
    pytest.importorskip("confusable_homoglyphs")  # the dev extra holds the source data
    script = ROOT / "scripts" / "generate_confusables.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_table_records_its_source_and_holds_unicode_facts() -> None:
    assert confusables_data.CONFUSABLES_VERSION == "13.0.0"
    assert confusables_data.SOURCE.startswith("confusable-homoglyphs ")
    assert CONFUSABLES is confusables_data.LOOKALIKES
    assert set(CONFUSABLES) == set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    assert all(c for c in CONFUSABLES.values()) and all(
        not ch.isascii() for chars in CONFUSABLES.values() for ch in chars
    )
    # confusables.txt: CYRILLIC SMALL LETTER A and GREEK SMALL LETTER ALPHA look like a; capital
    # I has the prototype l, so it shares its look-alikes (CYRILLIC PALOCHKA among them).
    assert {"\u0430", "\u03b1", "\U0001d41a"} <= set(CONFUSABLES["a"])
    assert CONFUSABLES["I"] == CONFUSABLES["l"] and "\u04c0" in CONFUSABLES["I"]
    assert "\u043a" not in CONFUSABLES["k"]  # Cyrillic ka maps to kra, not to k, in UTS #39


def test_letter_sets_cover_the_data_nfkc_and_accents() -> None:
    norm = frozenset({"nfkc", "confusables", "diacritics"})
    points = {cp for lo, hi in letter_set("i", norm, True).ranges for cp in range(lo, hi + 1)}
    # Cyrillic palochka (via I), Roman numeral one (NFKC), squared and circled i (NFKC), í.
    for char in ("\u04cf", "\u2170", "\U0001f138", "\u24d8", "\u00ed", "\u1d62"):
        assert ord(char) in points, char
    assert ord("l") not in points and ord("1") not in points  # no ASCII stand-ins


def test_word_characters_are_the_lookalikes_and_nothing_else() -> None:
    words = word_code_points()
    assert min(words) >= 128
    for char in ("\u03c1", "\u0430", "\uff41", "\U0001d41f", "\u00e9", "\u2170"):
        assert ord(char) in words, char
    for char in ("\u4e2d", "\u2014", "\u200b", "\u00ad", "\u0301", "\U0001f600", "@"):
        assert ord(char) not in words, char
