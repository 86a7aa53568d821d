"""Loading spec files: paths, word files next to the spec, package resources, the Spec value."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

import specs
from shield.errors import SpecError, SpecSyntaxError
from shield.policy import BacktrackPolicy
from shield.rules import (
    AfterRule,
    AtMostRule,
    LiteralRule,
    MatchOptions,
    MaxLengthRule,
    RegexRule,
    WordsRule,
)
from specs import Spec
from tests.specs.helpers import assert_located

WriteSpec = Callable[..., Path]

FULL = """
[spec]
name = "full"
description = "every rule kind"

[backtrack]
checkpoint = "sentence"
max_rollback_tokens = 12
max_retries = 2
max_discarded_tokens = 99
on_exhausted = "refuse"
refusal = "No."

[[rule]]
id = "words"
forbid.words = { file = "lists/bad.txt" }
match = { case = "insensitive", whole_word = true, normalize = ["leet", "nfkc"] }

[[rule]]
id = "card-after-mention"
after.regex = 'card'
after.match = { case = "insensitive" }
forbid.regex = '[0-9]{4}([ -]?[0-9]{4}){3}'

[[rule]]
id = "few-sorry"
at_most = 2
forbid.literal = "sorry"

[[rule]]
id = "short"
max_length = { bytes = 4096 }

[[rule]]
id = "toxic"
classifier = { name = "profanity-check", threshold = 0.75, scope = "window", window_tokens = 16 }
"""


def test_every_rule_kind_lowers_to_its_shield_rule(write_spec: WriteSpec) -> None:
    path = write_spec(FULL, "full.toml")
    (path.parent / "lists").mkdir()
    (path.parent / "lists" / "bad.txt").write_text(
        "# header\nbadword\n\n  worse \nbadword\n", encoding="utf-8"
    )
    spec = specs.load(path)
    assert spec.name == "full" and spec.description == "every rule kind"
    assert spec.policy == BacktrackPolicy(
        checkpoint="sentence", max_rollback_tokens=12, max_retries=2, max_discarded_tokens=99,
        on_exhausted="refuse", refusal="No.",
    )  # fmt: skip
    words, after, at_most, short, toxic = spec.rules
    assert words == WordsRule(
        id="words",
        words=("badword", "worse"),
        match=MatchOptions(
            case_insensitive=True, whole_word=True, normalize=frozenset({"leet", "nfkc"})
        ),
    )
    assert isinstance(after, AfterRule)
    assert after.trigger == RegexRule(
        id="card-after-mention", pattern="card", match=MatchOptions(case_insensitive=True)
    )
    assert after.forbid == RegexRule(id="card-after-mention", pattern="[0-9]{4}([ -]?[0-9]{4}){3}")
    assert at_most == AtMostRule(
        id="few-sorry", pattern=LiteralRule(id="few-sorry", literal="sorry"), count=2
    )
    assert short == MaxLengthRule(id="short", max_bytes=4096)
    assert (toxic.scope, toxic.window_tokens, toxic.threshold) == ("window", 16, 0.75)  # type: ignore[union-attr]
    assert spec.source == str(path)
    assert dict(spec.rule_lines) == {
        "words": 13,
        "card-after-mention": 18,
        "few-sorry": 24,
        "short": 29,
        "toxic": 33,
    }
    assert specs.parse(specs.render(spec)) == spec


def test_word_files_are_relative_to_the_spec_file(
    write_spec: WriteSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.txt").write_text("alpha\n")
    path = write_spec(
        '[spec]\nname = "x"\n[[rule]]\nid = "a"\nforbid.words = { file = "w.txt" }\n', "sub/s.toml"
    )
    monkeypatch.chdir(tmp_path)
    assert specs.load(path).rules[0].words == ("alpha",)  # type: ignore[union-attr]
    assert specs.load(Path("sub/s.toml")).rules[0].words == ("alpha",)  # type: ignore[union-attr]


def test_package_resource_word_list() -> None:
    text = '[spec]\nname = "x"\n[[rule]]\nid = "p"\nforbid.words = { package = "better_profanity", resource = "profanity_wordlist.txt" }\n'
    rule = specs.parse(text).rules[0]
    assert (
        isinstance(rule, WordsRule)
        and "arsehole" in rule.words
        and len(rule.words) == len(set(rule.words))
    )


def test_a_word_list_of_several_sources(write_spec: WriteSpec, tmp_path: Path) -> None:
    """An array of sources (tables) and words: their union, in order, duplicates once."""
    (tmp_path / "extra.txt").write_text("bollocks\narsehole\n")
    path = write_spec(
        '[spec]\nname = "x"\n[[rule]]\nid = "p"\nforbid.words = [{ package = "better_profanity",'
        ' resource = "profanity_wordlist.txt" }, { file = "extra.txt" }, "zonk"]\n'
    )
    words = specs.load(path).rules[0].words  # type: ignore[union-attr]
    assert "arsehole" in words and words[-2:] == ("bollocks", "zonk")
    assert len(words) == len(set(words))


def test_unreadable_spec_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SpecError) as caught:
        specs.load(missing)
    assert_located(
        caught.value,
        kind=SpecError,
        file=str(missing),
        line=None,
        rule_id=None,
        says=("not found",),
    )
    with pytest.raises(SpecError) as caught:
        specs.load(tmp_path)
    assert "cannot read" in caught.value.message
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'[spec]\nname = "x"\n\xff\n')
    with pytest.raises(SpecSyntaxError) as caught:
        specs.load(binary)
    assert_located(
        caught.value,
        kind=SpecSyntaxError,
        file=str(binary),
        line=3,
        rule_id=None,
        says=("not UTF-8",),
    )


def test_byte_order_mark_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(
        b'\xef\xbb\xbf[spec]\r\nname = "x"\r\n\r\n[[rule]]\r\nid = "a"\r\nforbid.literal = "y"\r\n'
    )
    spec = specs.load(path)
    assert spec.rule_lines == {"a": 4}


def test_spec_is_frozen_and_equality_ignores_where_it_came_from() -> None:
    text = '[spec]\nname = "x"\n[[rule]]\nid = "a"\nforbid.literal = "y"\n'
    one, two = specs.parse(text, source="one.toml"), specs.parse("\n\n" + text, source="two.toml")
    assert one == two and hash(one) == hash(two)
    assert one.rule_lines != two.rule_lines
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.name = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        one.rule_lines["a"] = 9  # type: ignore[index]
    assert one.rule("a") == LiteralRule(id="a", literal="y")
    with pytest.raises(KeyError):
        one.rule("b")
    assert one.line_of("a") == 3 and one.line_of(None) is None


def test_spec_rejects_duplicate_ids_and_stray_lines() -> None:
    rule = LiteralRule(id="a", literal="y")
    with pytest.raises(SpecSyntaxError, match="unique") as caught:
        Spec(name="x", rules=(rule, rule))
    assert caught.value.rule_id == "a"
    with pytest.raises(SpecSyntaxError, match="do not exist"):
        Spec(name="x", rules=(rule,), rule_lines={"b": 1})


def test_resolve_spec_path(tmp_path: Path) -> None:
    assert specs.resolve_spec_path("pii") == specs.library_path("pii")
    assert specs.resolve_spec_path(str(tmp_path / "x.toml")) == tmp_path / "x.toml"
    with pytest.raises(SpecError) as caught:
        specs.resolve_spec_path("secret")
    assert "did you mean 'secrets'?" in caught.value.message
