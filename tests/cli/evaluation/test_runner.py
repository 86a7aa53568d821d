"""The evaluation loop with an injected fake backend: same seeds everywhere, resumable runs."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shield.cli.evaluation import (
    Backend,
    EvaluationError,
    Progress,
    SampleStore,
    derive_seed,
    run_evaluation,
    write_report,
)
from tests.cli.evaluation.helpers import PROMPTS, FakeBackend, make_config


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _keys(path: Path) -> list[tuple[object, object, object]]:
    return [(d["strategy"], d["prompt_index"], d["sample"]) for d in _lines(path)]


def test_every_strategy_gets_the_same_prompts_and_seeds(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    fake = FakeBackend()
    samples = run_evaluation(config, PROMPTS, fake.backend(), SampleStore(tmp_path / "o", config))
    assert len(samples) == len(PROMPTS) * 2 * 4
    by_strategy: dict[str, list[tuple[str, int]]] = {}
    for strategy, prompts, seeds in fake.calls:
        assert len(prompts) <= config.batch_size
        by_strategy.setdefault(strategy, []).extend(zip(prompts, seeds, strict=True))
    expected = [(p, derive_seed(0, i, k)) for i, p in enumerate(PROMPTS) for k in range(2)]
    assert by_strategy == {s: expected for s in ("none", "mask", "reset", "backtrack")}
    line = _lines(tmp_path / "o" / "samples.jsonl")[0]
    for key in (
        "strategy",
        "prompt",
        "prompt_index",
        "sample",
        "seed",
        "text",
        "finish_reason",
        "stats",
        "events",
        "measures",
    ):
        assert key in line
    assert line["seed"] == derive_seed(0, 0, 0)


def test_measures_come_from_the_backend_not_the_events(tmp_path: Path) -> None:
    config = make_config(tmp_path, strategies=("none", "backtrack"), samples=1)
    samples = run_evaluation(
        config, PROMPTS, FakeBackend().backend(), SampleStore(tmp_path, config)
    )
    for sample in samples:
        toxic = "bad" in sample.text.split()
        assert sample.violations == (("bad-word",) if toxic else ())
        assert sample.toxicity == (0.9 if toxic else 0.1)
        assert sample.nll == pytest.approx(0.5 * len(sample.tokens)) and sample.nll_tokens == len(
            sample.tokens
        )
        assert sample.batch_rows >= 1


def test_interrupted_run_resumes_without_duplicates_or_changes(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    whole = tmp_path / "whole"
    complete = run_evaluation(config, PROMPTS, FakeBackend().backend(), SampleStore(whole, config))
    reference = write_report(whole, config, complete, plots=False)

    parts = tmp_path / "parts"
    first = FakeBackend(fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(config, PROMPTS, first.backend(), SampleStore(parts, config))
    written = _keys(parts / "samples.jsonl")
    assert 0 < len(written) < 32
    second = FakeBackend()
    samples = run_evaluation(config, PROMPTS, second.backend(), SampleStore(parts, config))
    regenerated = sum(len(seeds) for _, _, seeds in second.calls)
    assert regenerated == 32 - len(written)  # nothing recomputed
    keys = _keys(parts / "samples.jsonl")
    assert len(keys) == len(set(keys)) == 32  # nothing lost, nothing twice
    assert write_report(parts, config, samples, plots=False) == reference
    assert (parts / "report.json").read_text() == (whole / "report.json").read_text()


def test_a_prefix_run_is_extended_by_a_larger_limit(tmp_path: Path) -> None:
    out = tmp_path / "o"
    small = make_config(tmp_path, limit=2)
    run_evaluation(small, PROMPTS, FakeBackend().backend(), SampleStore(out, small))
    assert len(_keys(out / "samples.jsonl")) == 2 * 2 * 4
    full = make_config(tmp_path)
    fake = FakeBackend()
    samples = run_evaluation(full, PROMPTS, fake.backend(), SampleStore(out, full))
    assert {p for _, prompts, _ in fake.calls for p in prompts} == set(PROMPTS[2:])
    assert len(samples) == len(set(_keys(out / "samples.jsonl"))) == 32
    assert [s.key for s in samples] == sorted(
        (s.key for s in samples), key=lambda k: (full.strategies.index(k[0]), k[1], k[2])
    )


def test_a_line_cut_short_is_dropped_and_redone(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(
            config, PROMPTS, FakeBackend(fail_after=2).backend(), SampleStore(out, config)
        )
    path = out / "samples.jsonl"
    data = path.read_bytes()
    path.write_bytes(data + data.splitlines(keepends=True)[0][:40])  # an interrupted write
    samples = run_evaluation(config, PROMPTS, FakeBackend().backend(), SampleStore(out, config))
    keys = _keys(path)
    assert len(samples) == len(keys) == len(set(keys)) == 32


def test_a_corrupt_middle_line_is_an_error_with_its_line(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=1)
    out = tmp_path / "o"
    run_evaluation(config, PROMPTS, FakeBackend().backend(), SampleStore(out, config))
    path = out / "samples.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:-3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvaluationError, match=r"samples\.jsonl:2: invalid JSON"):
        SampleStore(out, config).open()


def test_another_configuration_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=1)
    out = tmp_path / "o"
    run_evaluation(config, PROMPTS, FakeBackend().backend(), SampleStore(out, config))
    other = make_config(tmp_path, limit=1, seed=5)
    with pytest.raises(EvaluationError, match=r"seed 0 -> 5.*choose another --out or delete"):
        SampleStore(out, other).open()
    (out / "config.json").unlink()  # the samples alone still identify their configuration
    with pytest.raises(EvaluationError, match=r"samples\.jsonl:1: written by another"):
        SampleStore(out, other).open()


def test_wrong_number_of_results_is_an_error(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    fake = FakeBackend()
    backend = fake.backend()
    broken = type(backend)(
        generate=lambda s, p, seeds, prefill, chat: fake.generate(s, p, seeds)[:-1],
        scan=backend.scan,
        toxicity=backend.toxicity,
        nll=None,
    )
    with pytest.raises(EvaluationError, match="expected 3 results, received 2"):
        run_evaluation(config, PROMPTS, broken, SampleStore(tmp_path / "o", config))


def test_progress_lines() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(stream, interval=10.0, clock=lambda: now[0])
    progress.start(rows=8, prompts=2, done_rows=2, done_prompts=0)
    now[0] = 1.0
    progress.update(4, 1)  # within the interval: no line on a non-terminal
    now[0] = 12.0
    progress.update(6, 1)
    progress.update(8, 2)  # the last line is always written
    lines = stream.getvalue().splitlines()
    assert lines[0] == "shield eval: 0/2 prompts, 2/8 samples"
    assert lines[1].startswith("shield eval: 1/2 prompts, 6/8 samples, 0.33 samples/s")
    assert "ETA 0m06s" in lines[1]
    assert lines[2].startswith("shield eval: 2/2 prompts, 8/8 samples") and "ETA" not in lines[2]
    assert len(lines) == 3


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress(stream, clock=lambda: 1.0)
    progress.start(rows=2, prompts=1, done_rows=0, done_prompts=0)
    progress.update(1, 0)
    progress.update(2, 1)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")
    Progress(None).update(1, 1)  # silent


def test_a_finished_run_never_builds_its_backend(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=2)
    out = tmp_path / "o"
    built: list[int] = []

    def factory() -> Backend:
        built.append(1)
        return FakeBackend().backend()

    first = run_evaluation(config, PROMPTS, factory, SampleStore(out, config))
    assert built == [1]

    def refuse() -> Backend:
        raise AssertionError("the backend was built although nothing was left to do")

    assert run_evaluation(config, PROMPTS, refuse, SampleStore(out, config)) == first


def test_a_result_without_text_is_an_error(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    fake = FakeBackend()
    backend = fake.backend()

    def textless(
        strategy: str,
        prompts: Sequence[str],
        seeds: Sequence[int],
        prefill: str | None,
        chat: bool,
    ) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in r.items() if k != "text"}
            for r in fake.generate(strategy, prompts, seeds)
        ]

    broken = Backend(generate=textless, scan=backend.scan, toxicity=backend.toxicity)
    with pytest.raises(EvaluationError, match="a result lacks text"):
        run_evaluation(config, PROMPTS, broken, SampleStore(tmp_path / "o", config))
