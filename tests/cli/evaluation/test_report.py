"""report.json, report.md and the plots, from a small samples file with known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from shield.cli.evaluation import Sample, SampleStore, build_report, write_report
from shield.cli.evaluation.plots import PLOT_FILES
from tests.cli.evaluation.helpers import REPORT_KEYS, make_config


def _sample(
    strategy: str, index: int, text: str, toxicity: float, nll: float, **stats: Any
) -> Sample:
    counters = {
        "generated_tokens": 4,
        "kept_tokens": 4,
        "discarded_tokens": 0,
        "rollbacks": 0,
        "max_rollback_tokens": 0,
        "wall_seconds": 1.0,
    }
    counters.update(stats)
    events: tuple[dict[str, Any], ...] = ()
    if counters["rollbacks"]:
        events = ({"kind": "rollback", "rule": "bad-word", "from_token": 5, "to_token": 2},)
    return Sample(
        config_hash=CONFIG.config_hash,
        strategy=strategy,
        prompt_index=index,
        sample=0,
        seed=index,
        prompt=f"prompt {index}",
        text=text,
        finish_reason="length",
        tokens=(1, 2, 3, 4),
        stats=counters,
        events=events,
        batch_rows=2,
        violations=("bad-word",) if "bad" in text else (),
        toxicity=toxicity,
        nll=nll,
        nll_tokens=4,
    )


CONFIG = make_config(Path("/fixture"), strategies=("none", "backtrack"), samples=1)
SAMPLES = (
    _sample("none", 0, "you bad", 0.9, 4.0),
    _sample("none", 1, "all fine", 0.1, 2.0),
    _sample(
        "backtrack",
        0,
        "you ok",
        0.2,
        6.0,
        generated_tokens=7,
        discarded_tokens=3,
        rollbacks=1,
        max_rollback_tokens=3,
    ),
    _sample("backtrack", 1, "all fine", 0.1, 2.0),
)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A directory holding the fixture as a samples file written by a run."""
    directory = tmp_path / "o"
    SampleStore(directory, CONFIG).open()
    SampleStore(directory, CONFIG).append(SAMPLES)
    return directory


def test_report_numbers(out: Path) -> None:
    samples = sorted(SampleStore(out, CONFIG).open().values(), key=lambda s: s.key)
    report = build_report(CONFIG, samples)
    none, backtrack = report["strategies"]["none"], report["strategies"]["backtrack"]
    assert set(none) >= REPORT_KEYS
    assert set(backtrack) >= REPORT_KEYS
    assert (none["violation_rate"], none["toxicity_rate"]) == (0.5, 0.5)
    assert none["expected_max_toxicity"] == pytest.approx(0.5)
    assert (backtrack["violation_rate"], backtrack["toxicity_rate"]) == (0.0, 0.0)
    assert backtrack["expected_max_toxicity"] == pytest.approx(0.15)
    assert backtrack["violation_rate_ci"][0] == 0.0 and backtrack["violation_rate_ci"][1] > 0.5
    assert backtrack["discard_ratio"] == pytest.approx(3 / 11)
    assert backtrack["generated_per_kept_token"] == pytest.approx(11 / 8)
    assert backtrack["rollbacks_per_sample"] == 0.5 and backtrack["max_rollback_tokens"] == 3
    assert none["tokens_per_second"] == pytest.approx(8 / 1.0)  # wall 1.0 s per 2-row call
    assert backtrack["perplexity"] == pytest.approx(math.exp(8 / 8))
    assert backtrack["perplexity_clean"] == pytest.approx(math.exp(2 / 4))  # prompt 1 only
    assert backtrack["clean_samples"] == 1
    assert none["distinct_1"] == pytest.approx(1.0)
    assert none["finish_reasons"] == {"length": 2}
    assert report["prompts"] == 2 and report["config"]["config_hash"] == CONFIG.config_hash


def test_files_are_written_and_plots_are_valid_pngs(out: Path) -> None:
    matplotlib_image = pytest.importorskip("matplotlib.image")
    samples = list(SampleStore(out, CONFIG).open().values())
    report = write_report(out, CONFIG, samples)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    for name in PLOT_FILES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        pixels = matplotlib_image.imread(out / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    markdown = (out / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == ["`none`", "`backtrack`"]
    assert "0.500 [" in rows[0] and "toxicity rate" in markdown
    assert all(f"]({name})" in markdown for name in PLOT_FILES)


def test_report_without_none_or_rollbacks(tmp_path: Path) -> None:
    config = make_config(tmp_path, strategies=("mask",), samples=1)
    sample = _sample("mask", 0, "", 0.0, 0.0)
    sample = Sample(
        **{
            **sample.__dict__,
            "config_hash": config.config_hash,
            "strategy": "mask",
            "nll": None,
            "nll_tokens": 0,
            "tokens": (),
        }
    )
    report = write_report(tmp_path, config, [sample])
    row = report["strategies"]["mask"]
    assert row["perplexity"] is None and row["perplexity_clean"] is None
    assert row["distinct_2"] is None
    assert (tmp_path / "rollback_lengths.png").stat().st_size > 0
    assert "–" in (tmp_path / "report.md").read_text()
