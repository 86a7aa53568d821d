"""``shield eval``: the toxicity evaluation of the four decoding strategies.

The same prompts and per-sample seeds go through ``none``, ``mask``, ``reset`` and ``backtrack``;
every response is measured independently of the decoding path (re-scan with the compiled spec,
classifier toxicity, teacher-forced perplexity) and appended to ``samples.jsonl``; the report
(``report.json``, ``report.md``, PNG plots) is computed from those lines alone.

Pieces: :class:`EvalConfig` and :func:`load_prompts` (what to run), :class:`SampleStore` (the
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
from shield.cli.evaluation.records import (
    EvalConfig,
    EvaluationError,
    Sample,
    derive_seed,
    file_sha256,
    load_prompts,
)
from shield.cli.evaluation.report import build_report, render_markdown, write_report
from shield.cli.evaluation.runner import Backend, Progress, run_evaluation
from shield.cli.evaluation.store import SampleStore

__all__ = [
    "Backend",
    "EvalConfig",
    "EvaluationError",
    "Progress",
    "Sample",
    "SampleStore",
    "bootstrap_mean_ci",
    "build_report",
    "derive_seed",
    "discard_ratio",
    "distinct_n",
    "expected_max_toxicity",
    "file_sha256",
    "load_prompts",
    "model_backend",
    "perplexity",
    "render_markdown",
    "run_evaluation",
    "spec_scanner",
    "spec_toxicity",
    "toxicity_probability",
    "wilson_interval",
    "write_report",
]
