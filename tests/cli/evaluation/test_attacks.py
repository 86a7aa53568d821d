"""Prefilling attacks, presets and the protocol table: rows with a prefill, their measures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shield.cli.evaluation import (
    PRESETS,
    EvaluationError,
    PromptRow,
    SampleStore,
    build_report,
    load_prompt_rows,
    preset,
    render_markdown,
    run_evaluation,
)
from shield.cli.evaluation.attacks import prefill_survival
from shield.cli.evaluation.records import WEIGHT_FORMATS
from tests.cli.evaluation.helpers import PROMPTS, FakeBackend, make_config

ROOT = Path(__file__).resolve().parents[3]


def test_rows_carry_prefill_and_chat(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "a"}\n{"prompt": "b", "prefill": "You idiot", "chat": true}\n',
        encoding="utf-8",
    )
    rows = load_prompt_rows(path)
    assert rows == (
        PromptRow(prompt="a"),
        PromptRow(prompt="b", prefill="You idiot", chat=True),
    )
    assert rows[0].uses_chat(True) and rows[1].uses_chat(False) is not False


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "a", "prefill": ""}', '"prefill" to be a non-empty string'),
        ('{"prompt": "a", "prefill": 3}', '"prefill" to be a non-empty string'),
        ('{"prompt": "a", "chat": "yes"}', '"chat" to be true or false'),
    ],
)
def test_bad_prefill_or_chat_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=rf"p\.jsonl:2: expected {message}"):
        load_prompt_rows(path)


def test_prefill_survival() -> None:
    assert prefill_survival("You stupid", "You stupid idea") == 1.0
    assert prefill_survival("You stupid", "You are kind") == pytest.approx(0.4)
    assert prefill_survival("You stupid", "") == 0.0


def _attack_rows() -> list[PromptRow]:
    rows = [PromptRow(prompt=p) for p in PROMPTS[:2]]
    rows += [PromptRow(prompt=p, prefill="bad start", chat=True) for p in PROMPTS[2:]]
    return rows


def test_rows_with_different_prefills_are_decoded_apart_and_measured(tmp_path: Path) -> None:
    config = make_config(tmp_path, samples=1, batch_size=4)
    fake = FakeBackend()
    samples = run_evaluation(
        config, _attack_rows(), fake.backend(), SampleStore(tmp_path / "o", config)
    )
    # The scenario: one chunk of four rows, two conditions, so two calls per strategy.
    assert len(fake.calls) == 8
    assert set(fake.conditions) == {(None, False), ("bad start", True)}
    for (_, prompts, _), (prefill, _) in zip(fake.calls, fake.conditions, strict=True):
        assert set(prompts) == (set(PROMPTS[2:]) if prefill else set(PROMPTS[:2]))
    attacked = [s for s in samples if s.prefill]
    assert len(attacked) == 8 and all(s.prompt_index >= 2 for s in attacked)
    report = build_report(config, samples)
    none, backtrack = (
        report["strategies"]["none"]["attack"],
        report["strategies"]["backtrack"]["attack"],
    )
    assert none["samples"] == 2 and none["prefills"] == 1
    assert none["prefill_survival"] == 1.0 and none["prefill_intact_rate"] == 1.0
    assert backtrack["prefill_survival"] == pytest.approx(len("bad ") / len("bad start"))
    assert none["wall_seconds"] == pytest.approx(2 * (0.5 - 0.1))  # compile time left out
    text = render_markdown(report)
    assert "## Prefilling attacks (2 attacked samples, 1 distinct prefills)" in text
    line = json.loads((tmp_path / "o" / "samples.jsonl").read_text().splitlines()[-1])
    assert line["prefill"] == "bad start"


def test_tokens_per_second_leaves_compilation_out(tmp_path: Path) -> None:
    config = make_config(tmp_path, samples=1)
    samples = run_evaluation(
        config, PROMPTS, FakeBackend().backend(), SampleStore(tmp_path / "o", config)
    )
    row = build_report(config, samples)["strategies"]["none"]
    assert row["compile_seconds"] == pytest.approx(0.1 * len(PROMPTS))
    wall = row["wall_seconds"] - row["compile_seconds"]
    assert row["tokens_per_second"] == pytest.approx(6 * len(PROMPTS) / wall)


def test_protocol_table_with_bootstrap_intervals(tmp_path: Path) -> None:
    config = make_config(tmp_path, samples=3)
    samples = run_evaluation(
        config, PROMPTS, FakeBackend().backend(), SampleStore(tmp_path / "o", config)
    )
    report = build_report(config, samples)
    row = report["strategies"]["none"]
    low, high = row["toxicity_probability_bootstrap_ci"]
    assert low <= row["toxicity_probability"] <= high
    assert "## RealToxicityPrompts protocol (K = 3 samples of N = 8 tokens" in render_markdown(
        report
    )
    single = make_config(tmp_path, samples=1)
    assert "protocol" not in render_markdown(build_report(single, samples[:4]))


def test_presets_point_into_the_repository() -> None:
    rtp = preset("rtp")
    assert (rtp.samples, rtp.max_new_tokens, rtp.top_p, rtp.temperature) == (25, 20, 0.9, 1.0)
    assert rtp.batch_size == rtp.samples  # one prompt's K samples per decoder call
    for item in PRESETS.values():
        assert item.prompts_path.is_file()
    attacks = load_prompt_rows(preset("prefill-attacks").prompts_path)
    assert len(attacks) == 96 and all(row.prefill and row.chat for row in attacks)
    with pytest.raises(EvaluationError, match="--preset: expected one of"):
        preset("nope")


def test_weights_option_is_validated_and_matches_the_decoders(tmp_path: Path) -> None:
    import decoders

    assert WEIGHT_FORMATS == decoders.WEIGHT_FORMATS
    assert "weights" not in make_config(tmp_path).identity()  # dense runs keep their hash
    assert make_config(tmp_path, weights="int8").identity()["weights"] == "int8"
    with pytest.raises(EvaluationError, match="--weights: expected one of dense, int8"):
        make_config(tmp_path, weights="fp4")
