"""``shield export``: the grammar on stdout or in a file, the JSON shape, warnings and --strict."""

from __future__ import annotations

import json
from pathlib import Path

import llguidance
import pytest

from shield.cli import main

SPEC = (
    '[spec]\nname = "demo"\n\n[[rule]]\nid = "no-foo"\nforbid.literal = "foo"\n'
    'match = { whole_word = true }\n\n[[rule]]\nid = "toxic"\n'
    'classifier = { name = "profanity-check", threshold = 0.9 }\n'
)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "demo.toml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def _valid(grammar: str) -> bool:
    compiled = llguidance.LLMatcher.grammar_from_lark(grammar)
    is_error, _ = llguidance.LLMatcher.validate_grammar_with_warnings(compiled)
    return not is_error


def test_export_prints_a_grammar_llguidance_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "pii", "--format", "lark"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("%llguidance {}\n")
    assert "start: SAFE" in captured.out
    assert captured.err == ""  # every pii rule is carried: nothing to warn about
    assert _valid(captured.out)


def test_a_rule_the_grammar_cannot_carry_is_reported_on_stderr_and_in_json(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(spec_file), "--format", "lark"]) == 0
    captured = capsys.readouterr()
    assert "warning: rule toxic (classifier) is not carried" in captured.err
    assert "NOT carried (classifier)" in captured.out
    assert main(["export", str(spec_file), "--format", "lark", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"spec", "format", "grammar", "carried", "not_carried"}
    assert (report["spec"], report["format"], report["carried"]) == ("demo", "lark", ["no-foo"])
    (item,) = report["not_carried"]
    assert (item["rule"], item["kind"]) == ("toxic", "classifier")
    assert "classifier" in item["reason"]
    assert _valid(report["grammar"])


def test_strict_refuses_a_spec_with_a_rule_it_cannot_carry(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(spec_file), "--format", "lark", "--strict"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert "rule toxic" in line and "--strict" in line and "drop --strict" in line
    assert main(["export", "secrets", "--format", "lark", "--strict"]) == 0  # all carried


def test_out_writes_the_grammar_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "pii.lark"
    assert main(["export", "pii", "--format", "lark", "--out", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert _valid(target.read_text(encoding="utf-8"))


def test_an_unknown_format_or_a_missing_spec_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export", "pii", "--format", "gbnf"])
    assert exited.value.code == 2
    assert "invalid choice: 'gbnf'" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.toml"), "--format", "lark"]) == 2
    assert "missing.toml" in capsys.readouterr().err
