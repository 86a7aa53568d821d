"""Support for the scenario tests of shielded decoding on scripted models.

A scenario test forces its scenario with a :class:`~tests.decoders.scripted.Script` (a rollback,
an exhausted budget, a stuck row, a refusal, an unsafe classifier window), asserts that the
scenario happened, and only then asserts the outcome. This module gives those tests:

* :func:`scripted_run`: the scripted model and the table its logits are a multiple of, with ties
  removed, so greedy decoding has one answer on the device and in the reference decoder;
* :func:`reference`: the reference decoder (:func:`shield.reference.reference_generate`) driven by
  the same table, and :func:`assert_agrees` to compare a device result with it field by field;
* :func:`classifier_windows` and :func:`assert_sound`: the soundness property recomputed from the
  returned tokens alone (no automaton rule fires, END included; every classifier window is safe);
* :func:`scenario_counts`: the counts that show a scenario happened, which the tests also record
  with pytest's ``record_property`` (``--junitxml`` collects them; nothing is printed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

import shield
from decoders.config import ModelConfig
from decoders.loading import Model
from decoders.shielded import judge_for
from decoders.tokenizer import Tokenizer
from shield.classifiers import score
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.reference import ReferenceSettings, reference_generate
from shield.result import GenerationResult, GenerationStats
from shield.rules import ClassifierRule, LiteralRule, RegexRule
from shield.sampling import SamplingConfig
from tests.decoders.scripted import Script, scripted_model

#: One-token prompts: every batched scenario runs three rows of the same shape, so the device
#: loop compiles once per static configuration (batch size, sampling rule, strategy, windows).
PROMPTS = ("A", "B", "C")
#: ``RAMP * id`` is subtracted from every logit of a script's table: it breaks the table's ties
#: (the lower id first, as ``argmax`` breaks them anyway) by far more than float32 resolution.
RAMP = 1e-3
#: The type of pytest's ``record_property`` fixture.
Record = Callable[[str, object], None]
#: Bytes that close a sentence window (README, "Classifier rules").
SENTENCE_END = frozenset(b".!?\n")


def token(tokenizer: Tokenizer, text: str) -> int:
    """The id of the one token that encodes ``text``."""
    (single,) = tokenizer.encode(text, add_bos=False)
    return single


def judge_of(tokenizer: Tokenizer, *rules: Any, **policy: Any) -> Judge:
    """A compiled spec of ``rules`` under ``BacktrackPolicy(**policy)``, bound to the tokenizer."""
    spec = SimpleNamespace(name="t", rules=tuple(rules), policy=BacktrackPolicy(**policy))
    return judge_for(shield.compile(spec), tokenizer)


@dataclasses.dataclass(frozen=True)
class ScriptedRun:
    """A scripted model and its table: the model's logits after token ``t`` are ``c * table[t]``."""

    model: Model
    table: np.ndarray

    def next_logits(self, prefix: Sequence[int]) -> np.ndarray:
        """The reference decoder's logits: the table's row of the last token (a positive multiple
        of the device's logits, so every greedy choice is the same)."""
        return self.table[prefix[-1]].astype(np.float64)

    def first_choice(self, after: int) -> int:
        """The greedy choice after token ``after``."""
        return int(np.argmax(self.table[after]))


def scripted_run(config: ModelConfig, script: Script) -> ScriptedRun:
    """The scripted model of ``script`` with the ties of its table broken.

    Raises:
        AssertionError: two logits of one row are within 1e-4 of each other (a tie that float32
            rounding could resolve differently on the two decoders).
    """
    vocab = config.vocab_size
    table = (script.table - RAMP * np.arange(vocab, dtype=np.float32)).astype(np.float32)
    gaps = np.diff(np.sort(table, axis=1), axis=1)
    assert gaps.min() > 1e-4, "the scripted table has a tie"
    return ScriptedRun(model=scripted_model(config, table), table=table)


def reference(
    run: ScriptedRun,
    tokenizer: Tokenizer,
    prompt: str,
    *,
    judge: Judge,
    max_new_tokens: int,
    strategy: str = "backtrack",
    prefill: str | None = None,
    repair_mask: bool = True,
) -> GenerationResult:
    """The reference decoder's greedy result for ``prompt`` on the same script."""
    settings = ReferenceSettings(
        strategy=strategy,
        max_new_tokens=max_new_tokens,
        sampling=SamplingConfig(temperature=0.0),
        repair_mask=repair_mask,
    )
    return reference_generate(
        run.next_logits,
        tokenizer.encode(prompt),
        judge=judge,
        eos_id=run.model.config.eos_token_ids,  # type: ignore[arg-type]
        settings=settings,
        prefill=tokenizer.encode(prefill, add_bos=False) if prefill else (),
        encode=lambda text: tokenizer.encode(text, add_bos=False),
    )


def assert_agrees(device: GenerationResult, expected: GenerationResult) -> None:
    """The device's result equals the reference's: tokens, text, reason, events and counters."""
    assert device.tokens == expected.tokens
    assert device.text == expected.text
    assert device.finish_reason == expected.finish_reason
    assert device.events == expected.events
    assert without_wall(device) == without_wall(expected)


def without_wall(result: GenerationResult) -> GenerationStats:
    """The counters of ``result`` without the wall time (the one field that may differ)."""
    return dataclasses.replace(result.stats, wall_seconds=0.0)


def response_bytes(judge: Judge, tokens: Sequence[int]) -> bytes:
    """The bytes of a response."""
    return b"".join(judge.token_bytes[t] for t in tokens)


def classifier_windows(rule: ClassifierRule, pieces: Sequence[bytes]) -> list[str]:
    """The windows of ``rule`` in a finished response, from the README's definition alone.

    ``sentence``: a window ends after each token that contains ``.``, ``!``, ``?`` or a newline,
    and the text after the last such token is one more window; ``window``: every
    ``window_tokens`` tokens, and the rest; ``response``: the whole text.
    """
    count = len(pieces)
    if rule.scope == "response":
        bounds = [(0, count)]
    elif rule.scope == "window":
        size = rule.window_tokens or count or 1
        bounds = [(start, min(start + size, count)) for start in range(0, count, size)]
    else:
        ends = [i + 1 for i, piece in enumerate(pieces) if SENTENCE_END & set(piece)]
        bounds = list(zip([0, *ends], [*ends, count], strict=True))
    return [
        b"".join(pieces[start:end]).decode("utf-8", errors="replace")
        for start, end in bounds
        if start < end
    ]


def assert_sound(judge: Judge, result: GenerationResult) -> None:
    """The soundness property of a returned response: no automaton rule fires on its text (END
    included) and every classifier window of it scores below its rule's threshold."""
    assert result.finish_reason != "refused" or result.text == judge.policy.refusal
    data = response_bytes(judge, result.tokens)
    assert judge.shield.first_violation(data, final=True) is None, result.text
    pieces = judge.token_bytes_of(result.tokens)
    for rule in judge.classifier_rules:
        windows = classifier_windows(rule, pieces)
        for window, value in zip(windows, score(rule.scorer, windows), strict=True):
            assert value < rule.threshold, (rule.id, window)


def scenario_counts(results: Sequence[GenerationResult], judge: Judge) -> dict[str, int]:
    """What happened in a batch: rewinds, exhaustion, stuck rows, refusals, classifier events."""
    events = [event for result in results for event in result.events]
    classifiers = {rule.id for rule in judge.classifier_rules}
    return {
        "rollbacks": sum(result.stats.rollbacks for result in results),
        "exhausted": sum(event.kind == "exhausted" for event in events),
        "stuck": sum(event.rule == "no-allowed-token" for event in events),
        "refused": sum(result.finish_reason == "refused" for result in results),
        "budget": sum(result.finish_reason == "budget" for result in results),
        "classifier_events": sum(event.rule in classifiers for event in events),
        "reported_violations": sum(event.kind == "violation" for event in events),
    }


def record(
    record_property: Record,
    results: Sequence[GenerationResult],
    judge: Judge,
    **extra: int,
) -> dict[str, int]:
    """Record the scenario counts of ``results`` (and ``extra``) as test properties; return them."""
    counts = {**scenario_counts(results, judge), **extra}
    for name, value in counts.items():
        record_property(name, value)
    return counts


def sampled_script(config: ModelConfig, tokenizer: Tokenizer) -> tuple[ScriptedRun, Judge]:
    """A scripted model for sampled decoding, and its spec (token checkpoints).

    After prompts A and C a forbidden "q" is all but certain (its logit is ``c * 3`` above the
    rest, so every row rolls back at position 0); then letters are drawn nearly uniformly from
    the row's alphabet ("hijk" for A, "vwxy" for C), in which four pairs are forbidden, so
    further rollbacks happen where the draws say. Prompt B draws from "rstu", which nothing
    forbids: it never rolls back. EOS is all but impossible (the rows run to the limit).
    """
    eos = config.eos_token_ids[0]
    script = Script(config.vocab_size)
    for prompt, letters in {"A": "hijk", "B": "rstu", "C": "vwxy"}.items():
        draws = [(token(tokenizer, letter), 0.0) for letter in letters] + [(eos, -1.0)]
        forced = [] if prompt == "B" else [(token(tokenizer, "q"), 3.0)]
        script.after(token(tokenizer, prompt), forced + draws)
        for letter in letters:
            script.after(token(tokenizer, letter), draws)
    judge = judge_of(
        tokenizer,
        LiteralRule(id="q", literal="q"),
        RegexRule(id="pair", pattern="hi|ij|jk|kh|vw|wx|xy|yv"),
        checkpoint="token",
    )
    return scripted_run(config, script), judge
