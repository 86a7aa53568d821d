"""``shield eval`` through ``shield.cli.main`` with the model replaced by the fake backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import shield.cli.evaluation
from shield.cli import main
from shield.cli.evaluation import Backend
from tests.cli.evaluation.helpers import PROMPTS, FakeBackend

SPEC = '[spec]\nname = "demo"\n\n[[rule]]\nid = "bad-word"\nforbid.literal = "bad"\n'


@pytest.fixture
def argv(tmp_path: Path) -> list[str]:
    spec = tmp_path / "demo.toml"
    spec.write_text(SPEC, encoding="utf-8")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return ["eval", "--spec", str(spec), "--prompts", str(prompts), "--samples", "2",
            "--batch-size", "3", "--out", str(tmp_path / "out"), "--no-plots"]  # fmt: skip


def _fake(monkeypatch: pytest.MonkeyPatch, fake: FakeBackend) -> list[Any]:
    built: list[Any] = []

    def model_backend(config: Any, compiled: Any = None) -> Backend:
        built.append(compiled)
        return fake.backend()

    monkeypatch.setattr(shield.cli.evaluation, "model_backend", model_backend)
    return built


def test_interrupt_then_continue(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    built = _fake(monkeypatch, FakeBackend(fail_after=3))
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Rerun the same command to continue" in err
    assert built and built[0] is not None  # the compiled spec is handed to the backend
    partial = (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    assert partial

    _fake(monkeypatch, FakeBackend())
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "| `backtrack` |" in captured.out
    assert "shield eval: 0/4 prompts" in captured.err  # progress on standard error
    lines = (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    assert lines[: len(partial)] == partial and len(lines) == len(set(lines)) == 32
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["strategies"]) == {"none", "mask", "reset", "backtrack"}
    assert not (tmp_path / "out" / "rates.png").exists()  # --no-plots


def test_changed_settings_are_refused_with_exit_2(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake(monkeypatch, FakeBackend())
    assert main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    assert main([*argv, "--quiet", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "choose another --out or delete" in err and "seed 0 -> 3" in err


def test_preset_fills_in_the_protocol_and_options_still_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "demo.toml"
    spec.write_text(SPEC, encoding="utf-8")
    _fake(monkeypatch, FakeBackend())
    out = tmp_path / "attacks"
    argv = ["eval", "--spec", str(spec), "--preset", "prefill-attacks", "--limit", "3",
            "--max-new-tokens", "8", "--weights", "int8", "--out", str(out), "--no-plots"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    # The preset's prompts and K; the command line's N and weights.
    assert Path(config["prompts_path"]).name == "prefill_attacks_dev.jsonl"
    assert (config["samples"], config["max_new_tokens"], config["weights"]) == (1, 8, "int8")
    assert config["batch_size"] == 8  # the preset's rows per call
    assert "## Prefilling attacks (3 attacked samples" in capsys.readouterr().out


def test_neither_prompts_nor_preset_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "demo.toml"
    spec.write_text(SPEC, encoding="utf-8")
    assert main(["eval", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "expected --prompts FILE or --preset NAME" in capsys.readouterr().err
