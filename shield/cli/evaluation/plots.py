"""The plots of ``shield eval``, drawn with matplotlib's Agg canvas into PNG files.

Figures are built with :class:`matplotlib.figure.Figure` and an explicit Agg canvas, never
through ``pyplot``, so no global state or display is touched. matplotlib is imported only when a
plot is drawn; it belongs to the ``dev`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shield.cli.evaluation.records import EvaluationError

__all__ = ["PLOT_FILES", "write_plots"]

#: The files :func:`write_plots` writes, in order.
PLOT_FILES: tuple[str, ...] = (
    "rates.png",
    "cost.png",
    "rollback_lengths.png",
    "toxicity_vs_cost.png",
)
_COLORS = {"none": "#7f7f7f", "mask": "#1f77b4", "reset": "#ff7f0e", "backtrack": "#2ca02c"}


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise EvaluationError(
            "plots need matplotlib (pip install matplotlib, or the dev extra); pass --no-plots to skip them"
        ) from error
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _errors(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[list[float]]]:
    values, low, high = [], [], []
    for row in rows:
        value = row[key] or 0.0
        interval = row.get(f"{key}_ci") or (value, value)
        values.append(value)
        low.append(max(value - interval[0], 0.0))
        high.append(max(interval[1] - value, 0.0))
    return values, [low, high]


def _rates(path: Path, strategies: Mapping[str, Mapping[str, Any]]) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    names = list(strategies)
    width = 0.38
    for offset, key, label, hatch in (
        (-width / 2, "toxicity_rate", "toxicity rate (classifier > 0.5)", ""),
        (width / 2, "violation_rate", "automaton-rule violation rate", "//"),
    ):
        values, errors = _errors([strategies[n] for n in names], key)
        axes.bar(
            [i + offset for i in range(len(names))],
            values,
            width,
            yerr=errors,
            capsize=4,
            label=label,
            color=[_COLORS.get(n, "#9467bd") for n in names],
            hatch=hatch,
            edgecolor="black",
        )
    axes.set_xticks(range(len(names)), names)
    axes.set_ylabel("share of samples (95% Wilson interval)")
    axes.set_ylim(0, 1)
    axes.set_title("Toxicity and rule violations per strategy")
    for handle in axes.legend(loc="upper right").legend_handles:
        if handle is not None:
            handle.set_facecolor("white")  # the bars are coloured by strategy, the key by hatch
    figure.tight_layout()
    figure.savefig(path, format="png")


def _cost(path: Path, strategies: Mapping[str, Mapping[str, Any]]) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    names = list(strategies)
    values = [strategies[n]["generated_per_kept_token"] or 0.0 for n in names]
    bars = axes.bar(
        names, values, color=[_COLORS.get(n, "#9467bd") for n in names], edgecolor="black"
    )
    axes.bar_label(bars, fmt="%.2f")
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    axes.set_ylabel("tokens generated per kept token")
    axes.set_title("Decoding cost per strategy (1.0 = nothing discarded)")
    figure.tight_layout()
    figure.savefig(path, format="png")


def _rollback_lengths(path: Path, lengths: Mapping[str, Sequence[int]]) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    shown = {name: values for name, values in lengths.items() if values}
    if shown:
        top = max(max(values) for values in shown.values())
        bins = list(range(0, top + 2))
        for name, values in shown.items():
            axes.hist(
                values,
                bins=bins,
                alpha=0.6,
                label=f"{name} ({len(values)} rollbacks)",
                color=_COLORS.get(name, "#9467bd"),
            )
        axes.legend()
    else:
        axes.text(
            0.5, 0.5, "no rollbacks in this run", ha="center", va="center", transform=axes.transAxes
        )
    axes.set_xlabel("tokens discarded by one rollback")
    axes.set_ylabel("rollbacks")
    axes.set_title("Distribution of rollback lengths")
    figure.tight_layout()
    figure.savefig(path, format="png")


def _tradeoff(path: Path, strategies: Mapping[str, Mapping[str, Any]]) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    top = 0.05
    for index, (name, row) in enumerate(strategies.items()):
        x = row["generated_per_kept_token"]
        y = row["toxicity_rate"]
        if x is None or y is None:
            continue
        top = max(top, y * 1.25)
        axes.scatter(
            [x], [y], s=80, color=_COLORS.get(name, "#9467bd"), edgecolor="black", zorder=3
        )
        # Staggered labels: strategies often share a point (nothing discarded, nothing toxic).
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6 + 12 * index))
    axes.set_ylim(-0.04 * min(top, 1.0), min(top, 1.0))
    axes.set_xlabel("tokens generated per kept token (cost)")
    axes.set_ylabel("toxicity rate")
    axes.set_title("Toxicity vs cost")
    axes.grid(True, linestyle=":")
    figure.tight_layout()
    figure.savefig(path, format="png")


def write_plots(
    out: Path, report: Mapping[str, Any], *, rollback_lengths_by: Mapping[str, Sequence[int]]
) -> list[Path]:
    """Draw the plots of a report into ``out``.

    Args:
        out: the output directory.
        report: from :func:`shield.cli.evaluation.report.build_report`.
        rollback_lengths_by: tokens discarded per rollback event, per strategy.

    Returns:
        The paths written, in the order of :data:`PLOT_FILES`: toxicity and violation rates per
        strategy, tokens generated per kept token, the distribution of rollback lengths, and
        toxicity rate against cost.

    Raises:
        EvaluationError: matplotlib is not installed.
    """
    strategies = report["strategies"]
    paths = [out / name for name in PLOT_FILES]
    _rates(paths[0], strategies)
    _cost(paths[1], strategies)
    _rollback_lengths(paths[2], rollback_lengths_by)
    _tradeoff(paths[3], strategies)
    return paths
