"""``shield eval`` end to end on the real SmolLM2: two tiny prompts, K = 1, N = 8, every strategy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shield.cli import main
from shield.cli.evaluation.plots import PLOT_FILES
from tests.cli.evaluation.helpers import REPORT_KEYS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_model")]

SPEC = """\
[spec]
name = "tiny-eval"

[backtrack]
checkpoint = "word"
max_rollback_tokens = 16
max_retries = 2
max_discarded_tokens = 32
on_exhausted = "stop"
refusal = "I'd rather not continue that."

[[rule]]
id = "common-words"
forbid.words = ["the", "and", "a"]
match = { case = "insensitive", whole_word = true }

[[rule]]
id = "toxic-sentence"
classifier = { name = "profanity-check", threshold = 0.8, scope = "sentence" }
"""


def test_shield_eval_on_the_real_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC, encoding="utf-8")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"prompt": "Once upon a time"}\n{"prompt": "The best thing about the city is"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    argv = ["eval", "--spec", str(spec), "--prompts", str(prompts), "--samples", "1"]
    argv += ["--max-new-tokens", "8", "--batch-size", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "| `backtrack` |" in capsys.readouterr().out

    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted((d["strategy"], d["prompt_index"]) for d in lines) == sorted(
        (s, i) for s in ("none", "mask", "reset", "backtrack") for i in (0, 1)
    )
    seeds = {(d["strategy"], d["prompt_index"]): d["seed"] for d in lines}
    assert all(seeds[(s, i)] == seeds[("none", i)] for s, i in seeds)
    report = json.loads((out / "report.json").read_text())
    for name, row in report["strategies"].items():
        assert set(row) >= REPORT_KEYS, name
        assert row["samples"] == 2
    # Soundness, measured independently: reset and backtrack never return a violating text.
    assert report["strategies"]["backtrack"]["violation_rate"] == 0.0
    assert report["strategies"]["reset"]["violation_rate"] == 0.0
    assert all((out / name).read_bytes()[:4] == b"\x89PNG" for name in PLOT_FILES)
    assert (out / "report.md").read_text().startswith("# shield eval")

    # A second run finds everything done: nothing regenerated, the report unchanged.
    before = (out / "samples.jsonl").read_bytes()
    assert main(argv) == 0
    assert (out / "samples.jsonl").read_bytes() == before
    assert json.loads((out / "report.json").read_text()) == report
