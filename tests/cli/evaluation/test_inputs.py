"""Prompt files, run settings and seeds: what is accepted, and the errors for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from shield.cli import main
from shield.cli.evaluation import EvalConfig, EvaluationError, derive_seed, load_prompts
from tests.cli.evaluation.helpers import make_config

SPEC = '[spec]\nname = "demo"\n\n[[rule]]\nid = "no-foo"\nforbid.literal = "foo"\n'


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_txt_one_prompt_a_line_blank_lines_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.txt", "first prompt\n\n  second, with spaces  \n")
    assert load_prompts(path) == ("first prompt", "  second, with spaces  ")


def test_jsonl_prompts_and_extra_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "p.jsonl", '{"prompt": "a", "category": "insult"}\n\n{"prompt": "b \\u00e9"}\n'
    )
    assert load_prompts(path) == ("a", "b é")


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.jsonl", '{"prompt": "a"}\n\n{"prompt": "b",}\n')
    with pytest.raises(EvaluationError, match=r"p\.jsonl:3: invalid JSON"):
        load_prompts(path)


@pytest.mark.parametrize("line", ['["a"]', '{"text": "a"}', '{"prompt": 3}', '{"prompt": ""}'])
def test_jsonl_line_without_a_string_prompt(tmp_path: Path, line: str) -> None:
    path = _write(tmp_path, "p.jsonl", '{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(
        EvaluationError, match=r'p\.jsonl:2: expected an object with a non-empty string "prompt"'
    ):
        load_prompts(path)


def test_other_file_errors(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"expected a \.txt"):
        load_prompts(_write(tmp_path, "p.csv", "a,b\n"))
    with pytest.raises(EvaluationError, match="holds no prompts"):
        load_prompts(_write(tmp_path, "empty.txt", "\n\n"))
    with pytest.raises(EvaluationError, match=r"latin\.txt:2: .*not UTF-8"):
        load_prompts(_write(tmp_path, "latin.txt", b"fine\ncaf\xe9\n"))
    with pytest.raises(EvaluationError, match="cannot read"):
        load_prompts(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"strategies": ("none", "greedy")}, "--strategies"),
        ({"strategies": ()}, "--strategies"),
        ({"strategies": ("none", "none")}, "--strategies"),
        ({"samples": 0}, "--samples"),
        ({"max_new_tokens": 0}, "--max-new-tokens"),
        ({"batch_size": 0}, "--batch-size"),
        ({"limit": 0}, "--limit"),
        ({"seed": -1}, "--seed"),
        ({"temperature": -0.5}, "--temperature"),
        ({"top_p": 1.5}, "--top-p"),
    ],
)
def test_config_rejects_bad_values(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(EvaluationError, match=message):
        make_config(tmp_path, **overrides)


def test_config_hash_covers_what_decides_the_texts(tmp_path: Path) -> None:
    base = make_config(tmp_path)
    assert base.strategies == ("none", "mask", "reset", "backtrack")
    reordered = make_config(tmp_path, strategies=("backtrack", "none", "mask", "reset"))
    assert reordered.strategies == base.strategies and reordered.config_hash == base.config_hash
    for change in (
        {"seed": 1},
        {"max_new_tokens": 9},
        {"temperature": 0.7},
        {"chat": True},
        {"model": "other.gguf"},
        {"spec_sha256": "f" * 64},
        {"strategies": ("none",)},
    ):
        assert make_config(tmp_path, **change).config_hash != base.config_hash, change
    for same in ({"samples": 5}, {"limit": 2}, {"batch_size": 1}):
        assert make_config(tmp_path, **same).config_hash == base.config_hash, same
    assert isinstance(base, EvalConfig) and base.to_json()["config_hash"] == base.config_hash


def test_derived_seeds_are_stable_distinct_and_31_bit() -> None:
    seeds = {derive_seed(0, i, k) for i in range(50) for k in range(4)}
    assert len(seeds) == 200
    assert all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(7, 3, 1) == derive_seed(7, 3, 1) != derive_seed(8, 3, 1)


def test_cli_reports_a_bad_prompt_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path, "demo.toml", SPEC)
    prompts = _write(tmp_path, "p.jsonl", '{"prompt": "a"}\nnot json\n')
    code = main(
        ["eval", "--spec", str(spec), "--prompts", str(prompts), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "p.jsonl:2: invalid JSON" in err and len(err.strip().splitlines()) == 1


def test_cli_rejects_an_unknown_strategy_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path, "demo.toml", SPEC)
    prompts = _write(tmp_path, "p.txt", "hello\n")
    argv = ["eval", "--spec", str(spec), "--prompts", str(prompts), "--strategies", "none,nope"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "--strategies" in capsys.readouterr().err
