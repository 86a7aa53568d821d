"""Classifier verdicts off the critical path, against the synchronous path they replace.

The overlapped path (the default: the device keeps decoding while a worker thread scores the
windows that closed) must return what the synchronous path (the device stops at every window)
returns: the same tokens, text, finish reason, events and counters, under scripted models and a
deterministic scorer, for every classifier scope, with a prefill and while streaming. Each test
first asserts that its scenario happened: a verdict arrived late (the row decoded past the unsafe
window, ``speculative_tokens > 0``) and rolled back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from decoders.config import ModelConfig
from decoders.shielded import generate_shielded
from decoders.tokenizer import Tokenizer
from decoders.verdict_queue import verdict_delay
from shield.errors import ClassifierError
from shield.result import GenerationResult
from shield.rules import ClassifierRule
from tests.decoders.scenario_support import (
    PROMPTS,
    assert_agrees,
    assert_sound,
    judge_of,
    reference,
    scripted_run,
    token,
)
from tests.decoders.scripted import Script
from tests.decoders.test_classifier_rules import SCOPES, WINDOW_TOKENS

MAX_NEW_TOKENS = 8
SCORER = "tests.decoders.test_classifier_rules:mentions_z"


def refuses_everything(texts: list[str]) -> list[float]:
    """A scorer that fails (``tests.decoders.test_async_classifier:refuses_everything``)."""
    raise RuntimeError("scorer down")


def _rule(scope: str, scorer: str = SCORER) -> ClassifierRule:
    return ClassifierRule(
        id=f"z-{scope}",
        scorer=scorer,
        threshold=0.5,
        scope=scope,  # type: ignore[arg-type]
        window_tokens=WINDOW_TOKENS if scope == "window" else None,
    )


def _both(
    run_model: object, tokenizer: Tokenizer, **kwargs: object
) -> tuple[list[GenerationResult], list[GenerationResult]]:
    overlapped = generate_shielded(run_model, tokenizer, PROMPTS, **kwargs)  # type: ignore[arg-type]
    synchronous = generate_shielded(
        run_model,
        tokenizer,
        PROMPTS,
        classifier_overlap=False,
        **kwargs,  # type: ignore[arg-type]
    )
    return overlapped, synchronous


def _late(result: GenerationResult) -> bool:
    """A verdict came back after the row had decoded past its window, and rolled it back."""
    return result.stats.speculative_tokens > 0 and result.stats.rollbacks > 0


@pytest.mark.parametrize("scope", list(SCOPES))
def test_overlapped_verdicts_return_what_the_synchronous_path_returns(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, scope: str
) -> None:
    t = functools.partial(token, tiny_tokenizer)
    build, texts = SCOPES[scope]
    run = scripted_run(
        tiny_config, build(t, tiny_config.eos_token_ids[0], Script(tiny_config.vocab_size))
    )
    judge = judge_of(tiny_tokenizer, _rule(scope), checkpoint="token")
    overlapped, synchronous = _both(
        run.model, tiny_tokenizer, judge=judge, max_new_tokens=MAX_NEW_TOKENS, temperature=0.0
    )
    # The scenario: some verdict arrived late and rolled back (a response-scope window closes
    # only when the text ends, and is judged then); the synchronous path never decodes past a
    # window.
    assert any(_late(r) for r in overlapped) == (scope != "response")
    assert all(r.stats.speculative_tokens == 0 for r in synchronous)
    # The outcome: the same results (counters included: speculative steps are not generated
    # tokens), the expected repaired texts, sound, and equal to the reference decoder's.
    for prompt, fast, slow in zip(PROMPTS, overlapped, synchronous, strict=True):
        assert_agrees(fast, slow)
        assert_sound(judge, fast)
        assert_agrees(
            fast, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=MAX_NEW_TOKENS)
        )
    assert [r.text for r in overlapped] == texts


def _late_sentence_script(t: Callable[[str], int], eos: int, script: Script) -> Script:
    """After the prefill "a.": "z." (an unsafe sentence), then more text; repaired to "b."."""
    script.after(t("."), [(t("z"), 6.0), (t("b"), 5.0)])
    script.after(t("z"), [(t("."), 6.0)])
    return script.after(t("b"), [(t("."), 6.0)])


def test_late_verdict_rolls_back_past_the_prefill_and_streams_only_judged_text(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer
) -> None:
    t = functools.partial(token, tiny_tokenizer)
    run = scripted_run(
        tiny_config,
        _late_sentence_script(t, tiny_config.eos_token_ids[0], Script(tiny_config.vocab_size)),
    )
    judge = judge_of(tiny_tokenizer, _rule("sentence"), checkpoint="token")
    pieces: dict[str, list[tuple[int, str]]] = {"overlap": [], "sync": []}
    results = {}
    for name, overlap in (("overlap", True), ("sync", False)):
        results[name] = generate_shielded(
            run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=12,
            temperature=0.0, prefill="a.", chunk=4, classifier_overlap=overlap,
            stream=lambda row, text, log=pieces[name]: log.append((row, text)),
        )  # fmt: skip
    # The scenario: every row decoded past an unsafe "z." before its verdict (each at most
    # 2 * chunk - 1 tokens late, plus the token it waits with) and rolled back, first to the end
    # of the prefill.
    for result in results["overlap"]:
        assert _late(result)
        bound = result.stats.rollbacks * (verdict_delay(4) + 1)
        assert result.stats.speculative_tokens <= bound
        first = result.events[0]
        assert (first.rule, first.from_token, first.to_token) == (
            "z-sentence",
            4,
            2,
        )
    # The outcome: the same results as the synchronous path, and the streamed pieces are the
    # final text, never text whose window was still being judged.
    for fast, slow in zip(results["overlap"], results["sync"], strict=True):
        assert_agrees(fast, slow)
        assert fast.text.startswith("a.b.")
        assert "z" not in fast.text
    for row, result in enumerate(results["overlap"]):
        streamed = "".join(text for r, text in pieces["overlap"] if r == row)
        assert streamed == result.text
        assert "z" not in streamed


def test_a_failing_scorer_on_the_worker_stops_generation(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer
) -> None:
    t = functools.partial(token, tiny_tokenizer)
    run = scripted_run(
        tiny_config,
        _late_sentence_script(t, tiny_config.eos_token_ids[0], Script(tiny_config.vocab_size)),
    )
    rule = _rule("sentence", "tests.decoders.test_async_classifier:refuses_everything")
    judge = judge_of(tiny_tokenizer, rule, checkpoint="token")
    with pytest.raises(ClassifierError, match="scorer down"):
        generate_shielded(
            run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=6,
            temperature=0.0, prefill="z", chunk=2,
        )  # fmt: skip
