"""``shield eval``: the toxicity evaluation of the four decoding strategies.

The same prompts and per-sample seeds go through ``none``, ``mask``, ``reset`` and ``backtrack``;
every response is measured independently of the decoding path (re-scan with the compiled spec,
classifier toxicity, teacher-forced perplexity) and appended to ``samples.jsonl``; the report
(``report.json``, ``report.md``, PNG plots) is computed from those lines alone.

Pieces: :class:`EvalConfig`, :func:`load_prompt_rows` and the :data:`PRESETS` (what to run), :class:`SampleStore` (the
output directory, resumable), :func:`run_evaluation` with a :class:`Backend` (the loop; the real
backend is :func:`model_backend`), :func:`write_report` (the report), :mod:`~shield.cli.evaluation.metrics`
(the statistics). Importing this package never imports JAX.

Example:
    >>> from shield.cli.evaluation import wilson_interval
    >>> [round(x, 3) for x in wilson_interval(0, 10)]
    [0.0, 0.278]
"""

from shield.cli.evaluation.backend import model_backend, spec_scanner, spec_toxicity
from shield.cli.evaluation.metrics import (
    bootstrap_mean_ci,
    discard_ratio,
    distinct_n,
    expected_max_toxicity,
    perplexity,
    toxicity_probability,
    wilson_interval,
)
from shield.cli.evaluation.presets import PRESETS, Preset, preset
from shield.cli.evaluation.prompts import PromptRow, load_prompt_rows, load_prompts
from shield.cli.evaluation.records import (
    EvalConfig,
    EvaluationError,
    Sample,
    derive_seed,
    file_sha256,
)
from shield.cli.evaluation.report import build_report, render_markdown, write_report
from shield.cli.evaluation.runner import Backend, Progress, run_evaluation
from shield.cli.evaluation.store import SampleStore

__all__ = [
    "PRESETS",
    "Backend",
    "EvalConfig",
    "EvaluationError",
    "Preset",
    "Progress",
    "PromptRow",
    "Sample",
    "SampleStore",
    "bootstrap_mean_ci",
    "build_report",
    "derive_seed",
    "discard_ratio",
    "distinct_n",
    "expected_max_toxicity",
    "file_sha256",
    "load_prompt_rows",
    "load_prompts",
    "model_backend",
    "perplexity",
    "preset",
    "render_markdown",
    "run_evaluation",
    "spec_scanner",
    "spec_toxicity",
    "toxicity_probability",
    "wilson_interval",
    "write_report",
]
