"""The evaluation loop: the same prompts and seeds through every strategy, measured, saved per batch.

The work is the grid prompt × sample × strategy. It is cut into chunks of ``batch_size``
(prompt, sample) pairs; each chunk runs through every strategy before the next chunk starts, so
an interrupted run has compared all strategies on the same prompts so far. After each decoder
call the batch is measured independently of the decoding path (a re-scan of the final texts, the
classifier score of each whole continuation, its teacher-forced likelihood) and appended to
``samples.jsonl`` before anything else happens.

Everything model-specific comes in through a :class:`Backend`, so tests run the loop with a fake
generation function and :func:`shield.cli.evaluation.backend.model_backend` plugs in the JAX decoder.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from shield.cli.evaluation.prompts import PromptRow
from shield.cli.evaluation.records import EvalConfig, EvaluationError, Sample, counters, derive_seed
from shield.cli.evaluation.store import SampleStore

__all__ = ["Backend", "GenerateFn", "NllFn", "Progress", "ScanFn", "ScoreFn", "run_evaluation"]

#: ``generate(strategy, prompts, seeds, prefill, chat)`` → one ``shield generate --json`` object
#: per prompt; every prompt of one call shares the prefill (None: none) and the chat rendering.
GenerateFn = Callable[
    [str, Sequence[str], Sequence[int], str | None, bool], Sequence[Mapping[str, Any]]
]
#: ``scan(text)`` → ids of the automaton rules the text violates.
ScanFn = Callable[[str], Sequence[str]]
#: ``toxicity(texts)`` → one classifier probability per text.
ScoreFn = Callable[[Sequence[str]], Sequence[float]]
#: ``nll(prompts, continuations, chat)`` → ``(summed NLL, tokens)`` of each continuation's token
#: ids, the prompts rendered with the chat template when ``chat``.
NllFn = Callable[[Sequence[str], Sequence[Sequence[int]], bool], Sequence[tuple[float, int]]]


@dataclass(frozen=True, kw_only=True)
class Backend:
    """What the evaluation loop needs from a model and a spec.

    Attributes:
        generate: the decoder, for every strategy of the run.
        scan: the compiled spec's automaton rules, re-applied to final texts.
        toxicity: the classifier applied to whole continuations.
        nll: teacher-forced likelihood of continuations under the model (None: not measured).
    """

    generate: GenerateFn
    scan: ScanFn
    toxicity: ScoreFn
    nll: NllFn | None = None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """A progress line on a stream: rewritten in place on a terminal, a line now and then otherwise.

    Args:
        stream: where to write (None: nowhere).
        interval: seconds between lines when the stream is not a terminal.
        clock: the time source (for tests).
    """

    def __init__(
        self,
        stream: TextIO | None = sys.stderr,
        *,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self.interval = interval
        self.clock = clock
        self._began = clock()
        self._last = -float("inf")
        self._first = 0
        self._totals = (0, 0)

    def start(self, rows: int, prompts: int, done_rows: int, done_prompts: int) -> None:
        """Begin: ``rows`` samples over ``prompts`` prompts, of which some are already done."""
        self._began, self._first, self._totals = self.clock(), done_rows, (rows, prompts)
        self.update(done_rows, done_prompts)

    def update(self, done_rows: int, done_prompts: int) -> None:
        """Report that ``done_rows`` samples and ``done_prompts`` prompts are done."""
        if self.stream is None:
            return
        rows, prompts = self._totals
        now = self.clock()
        finished = done_rows >= rows
        if not self.tty and not finished and now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._began
        fresh = done_rows - self._first
        line = f"shield eval: {done_prompts}/{prompts} prompts, {done_rows}/{rows} samples"
        if fresh > 0 and elapsed > 0:
            rate = fresh / elapsed
            line += f", {rate:.2f} samples/s, elapsed {_duration(elapsed)}"
            if not finished:
                line += f", ETA {_duration((rows - done_rows) / rate)}"
        if self.tty:
            self.stream.write("\r" + line.ljust(100) + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _chunks(units: Sequence[tuple[int, int]], size: int) -> Iterator[Sequence[tuple[int, int]]]:
    for start in range(0, len(units), size):
        yield units[start : start + size]


_RESULT_KEYS = ("text", "finish_reason", "tokens", "stats")


def _check_results(strategy: str, results: Sequence[Mapping[str, Any]], expected: int) -> None:
    if len(results) != expected:
        raise EvaluationError(
            f"generating {strategy}: expected {expected} results, received {len(results)}"
        )
    for result in results:
        missing = [key for key in _RESULT_KEYS if key not in result]
        if missing:
            raise EvaluationError(
                f"generating {strategy}: expected results with {', '.join(_RESULT_KEYS)}; "
                f"a result lacks {', '.join(missing)}"
            )


def _measure(
    config: EvalConfig,
    backend: Backend,
    strategy: str,
    todo: Sequence[tuple[int, int]],
    prompts: Sequence[str],
    results: Sequence[Mapping[str, Any]],
    prefill: str | None = None,
    chat: bool = False,
) -> list[Sample]:
    texts = [str(result["text"]) for result in results]
    tokens = [tuple(int(t) for t in result["tokens"]) for result in results]
    toxicity = list(backend.toxicity(texts))
    if backend.nll is not None:
        nll: Sequence[tuple[float | None, int]] = backend.nll(prompts, tokens, chat)
    else:
        nll = [(None, 0)] * len(texts)
    if len(toxicity) != len(texts) or len(nll) != len(texts):
        raise EvaluationError(
            f"measuring {strategy}: expected {len(texts)} scores, received {len(toxicity)} "
            f"toxicity scores and {len(nll)} likelihoods"
        )
    samples = []
    for row, ((index, sample), result) in enumerate(zip(todo, results, strict=True)):
        samples.append(
            Sample(
                config_hash=config.config_hash,
                strategy=strategy,
                prompt_index=index,
                sample=sample,
                seed=derive_seed(config.seed, index, sample),
                prompt=prompts[row],
                text=texts[row],
                finish_reason=str(result["finish_reason"]),
                tokens=tokens[row],
                stats=counters(result["stats"]),
                events=tuple(dict(event) for event in result.get("events", ())),
                batch_rows=len(todo),
                violations=tuple(dict.fromkeys(str(rule) for rule in backend.scan(texts[row]))),
                toxicity=float(toxicity[row]),
                nll=nll[row][0],
                nll_tokens=int(nll[row][1]),
                prefill=prefill,
            )
        )
    return samples


def _groups(
    todo: Sequence[tuple[int, int]], rows: Sequence[PromptRow], chat: bool
) -> list[tuple[tuple[str | None, bool], list[tuple[int, int]]]]:
    """``todo`` split by (prefill, chat), in order of first appearance: one decoder call each
    (the decoders force one prefill and one rendering per batch)."""
    groups: dict[tuple[str | None, bool], list[tuple[int, int]]] = {}
    for index, sample in todo:
        row = rows[index]
        groups.setdefault((row.prefill, row.uses_chat(chat)), []).append((index, sample))
    return list(groups.items())


def run_evaluation(
    config: EvalConfig,
    prompts: Sequence[str | PromptRow],
    backend: Backend | Callable[[], Backend],
    store: SampleStore,
    *,
    progress: Progress | None = None,
) -> list[Sample]:
    """Generate and measure every sample of the run that ``store`` does not hold yet.

    Args:
        config: the run (``limit``, ``samples``, ``strategies``, ``batch_size``, ``seed``).
        prompts: every prompt (or :class:`PromptRow`) of the prompt file; the first
            ``config.limit`` are used. Rows of one batch that differ in prefill or chat rendering
            are decoded in separate calls; seeds do not depend on the batching.
        backend: the decoder and the measures, or a function that builds them (called only
            when something is left to generate, so a finished run never loads a model).
        store: the output directory (opened here; loaded samples are skipped).
        progress: where to report progress (None: silent).

    Returns:
        The samples of the selected prompts, for every strategy, in strategy, prompt and sample
        order (loaded and new alike).

    Raises:
        EvaluationError: the store belongs to another configuration, or the backend answered
            with the wrong number of results.
    """
    rows = tuple(PromptRow.of(p) for p in prompts)
    selected = rows[: config.limit] if config.limit is not None else rows
    units = [(i, k) for i in range(len(selected)) for k in range(config.samples)]
    done = store.open()
    per_prompt = len(config.strategies) * config.samples
    remaining = [per_prompt] * len(selected)
    for strategy, index, sample in done:
        if strategy in config.strategies and index < len(selected) and sample < config.samples:
            remaining[index] -= 1
    total = len(units) * len(config.strategies)

    def counts() -> tuple[int, int]:
        return total - sum(remaining), sum(1 for left in remaining if left == 0)

    if progress is not None:
        progress.start(total, len(selected), *counts())
    built: list[Backend] = []  # the backend, once needed
    for chunk in _chunks(units, config.batch_size):
        for strategy in config.strategies:
            todo = [(i, k) for i, k in chunk if (strategy, i, k) not in done]
            for (prefill, chat), group in _groups(todo, selected, config.chat):
                texts = [selected[i].prompt for i, _ in group]
                seeds = [derive_seed(config.seed, i, k) for i, k in group]
                if not built:
                    built.append(backend if isinstance(backend, Backend) else backend())
                results = list(built[0].generate(strategy, texts, seeds, prefill, chat))
                _check_results(strategy, results, len(group))
                fresh = _measure(config, built[0], strategy, group, texts, results, prefill, chat)
                store.append(fresh)
                for item in fresh:
                    done[item.key] = item
                    remaining[item.prompt_index] -= 1
                if progress is not None:
                    progress.update(*counts())
    return [done[(s, i, k)] for s in config.strategies for i, k in units]
