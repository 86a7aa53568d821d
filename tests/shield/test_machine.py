"""The reference machine's rewind point and length limit (issue 16): what a rewind takes back.

Two mechanics decide how much ``backtrack`` regenerates: an unsafe classifier window fails from the
piece that made it unsafe (:meth:`shield.machine.Machine.narrow`), not from the window's start; and
a rewind into a forced prefill lowers the row's limit, so the model never writes more than N tokens
of a response (``Config.limit``). Each test first asserts that its scenario happened (the window
was unsafe, the rewind went into the prefill), then the outcome.
"""

from __future__ import annotations

import numpy as np

from proofs.model_checker import CONTAINS_B
from shield.controller import Failure
from shield.machine import Machine
from shield.policy import BacktrackPolicy
from shield.reference import ReferenceSettings, reference_generate
from shield.rules import ClassifierRule, WordsRule
from shield.sampling import SamplingConfig
from tests.shield.test_reference import EOS, VOCAB, encode, make_judge

NO_B_SENTENCE = ClassifierRule(id="no-b-sentence", scorer=CONTAINS_B, threshold=0.5)


def _machine(*, narrow: bool, strategy: str = "backtrack") -> Machine:
    _, judge = make_judge([NO_B_SENTENCE], BacktrackPolicy(checkpoint="word"))
    settings = ReferenceSettings(strategy=strategy, max_new_tokens=16, narrow_windows=narrow)
    return Machine(judge, EOS, settings)


def test_an_unsafe_window_fails_from_the_word_that_made_it_unsafe() -> None:
    tokens = tuple(encode("ca ac ab cc."))
    machine = _machine(narrow=True)
    failure = machine.judge.closed_window_failure(tokens)
    assert failure is not None and failure.start == 0  # the whole sentence was judged unsafe
    narrowed = machine.narrow(failure)
    text = machine.judge.detokenize
    assert "b" not in text(tokens[: narrowed.start])  # everything kept scored safe
    assert text(tokens[narrowed.start :]).lstrip().startswith("ab")  # from the offending word
    assert (narrowed.tokens, narrowed.rule) == (failure.tokens, failure.rule)


def test_narrowing_is_a_setting_and_leaves_other_failures_alone() -> None:
    tokens = tuple(encode("ca ab."))
    failure = Failure(tokens=tokens, start=0, rule=NO_B_SENTENCE.id)
    assert _machine(narrow=False).narrow(failure) == failure
    assert _machine(narrow=True, strategy="reset").narrow(failure) == failure
    automaton = Failure(tokens=tokens, start=0, rule="some-automaton-rule")
    assert _machine(narrow=True).narrow(automaton) == automaton
    with_eos = Failure(tokens=(*tokens, EOS), start=0, rule=NO_B_SENTENCE.id)
    assert _machine(narrow=True).narrow(with_eos).start > 0  # the EOS is not part of the window


def test_backtrack_regenerates_less_of_an_unsafe_sentence() -> None:
    """Greedy: 'ca ab.' first (unsafe), 'ca cc.' once 'ab' is banned; the narrowed rewind keeps 'ca '."""

    def model(prefix: list[int]) -> np.ndarray:
        text = b"".join(VOCAB[t] for t in prefix[1:])  # prefix[0] is the prompt
        plan = {b"": 8, b"c": 1, b"ca": 4, b"ca ": 6, b"ca ab": 5, b"ca c": 3, b"ca cc": 5}
        logits = np.zeros(len(VOCAB))
        logits[plan.get(text, EOS)] = 5.0
        logits[3] += 1.0  # 'c' comes second: what the model writes where its choice is banned
        return logits

    _, judge = make_judge([NO_B_SENTENCE], BacktrackPolicy(checkpoint="word"))
    results = {}
    for narrow in (False, True):
        settings = ReferenceSettings(
            strategy="backtrack",
            max_new_tokens=8,
            narrow_windows=narrow,
            sampling=SamplingConfig(temperature=0.0),
        )
        results[narrow] = reference_generate(model, [1], judge=judge, eos_id=EOS, settings=settings)
    for result in results.values():
        assert result.stats.rollbacks >= 1  # the sentence 'ca ab.' was unsafe
        assert "b" not in result.text
    narrowed = next(e for e in results[True].events if e.kind == "rollback")
    whole = next(e for e in results[False].events if e.kind == "rollback")
    assert whole.to_token == 0 < narrowed.to_token  # the narrowed rewind kept 'ca'
    assert results[True].stats.generated_tokens < results[False].stats.generated_tokens


def test_a_rewind_into_the_prefill_keeps_the_model_to_n_tokens() -> None:
    """The prefill 'ba ' holds a forbidden whole word; the model never ends the text."""
    policy = BacktrackPolicy(checkpoint="token")
    _, judge = make_judge([WordsRule(id="ba", words=("ba",))], policy)

    def endless(prefix: list[int]) -> np.ndarray:
        logits = np.zeros(len(VOCAB))
        logits[3] = 5.0  # 'c' forever
        return logits

    max_new = 5
    settings = ReferenceSettings(strategy="backtrack", max_new_tokens=max_new)
    prefill = encode("ba ")
    result = reference_generate(
        endless, [1], judge=judge, eos_id=EOS, settings=settings, prefill=prefill
    )
    rollback = next(e for e in result.events if e.kind == "rollback")
    assert rollback.to_token < len(prefill)  # the rewind went into the prefill
    assert result.finish_reason == "length"
    assert len(result.tokens) == rollback.to_token + max_new
    assert result.stats.generated_tokens <= max_new + result.stats.discarded_tokens
