"""The reference decoder over toy models: the theorems of proofs/ as properties."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import shield
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.reference import ReferenceSettings, reference_generate
from shield.rules import MatchOptions, RegexRule, WordsRule
from shield.sampling import SamplingConfig

# Toy vocabulary: EOS, letters, a space, a period, and multi-byte tokens that split words.
VOCAB: tuple[bytes, ...] = (b"", b"a", b"b", b"c", b" ", b".", b"ab", b" ba", b"ca")
EOS = 0

RULE_POOL = [
    WordsRule(id="bad-word", words=("abc", "cab")),
    WordsRule(id="ba-word", words=("ba",), match=MatchOptions(whole_word=True)),
    RegexRule(id="b-run", pattern="b{3,}"),
    RegexRule(id="ca-dot", pattern="ca[.]"),
]


def make_judge(rules, policy):  # type: ignore[no-untyped-def]
    compiled = shield.compile(SimpleNamespace(name="toy", rules=tuple(rules), policy=policy))
    return compiled, Judge(compiled, compiled.lift(VOCAB))


def hashed_model(salt: int):  # type: ignore[no-untyped-def]
    """A deterministic toy model: logits are a hash of the prefix."""

    def next_logits(prefix):  # type: ignore[no-untyped-def]
        digest = hashlib.sha256(f"{salt}:{list(prefix)}".encode()).digest()
        logits = np.frombuffer(digest[: len(VOCAB)], dtype=np.uint8).astype(np.float64) / 32.0
        logits[EOS] -= 2.0  # responses are not too short
        return logits

    return next_logits


def adversarial_model(prefix):  # type: ignore[no-untyped-def]
    """Always prefers the continuation that completes a forbidden word ('abc', ' ba ', 'bbb')."""
    logits = np.zeros(len(VOCAB))
    last = prefix[-1] if prefix else None
    preferred = {1: 2, 2: 3, 6: 3, 3: 6, None: 1}.get(last, 7)
    logits[preferred] = 5.0
    logits[2] += 1.0
    return logits


policies = st.builds(
    BacktrackPolicy,
    checkpoint=st.sampled_from(["token", "word", "sentence"]),
    max_rollback_tokens=st.integers(1, 8),
    max_retries=st.integers(1, 3),
    max_discarded_tokens=st.integers(1, 24),
    on_exhausted=st.sampled_from(["stop", "refuse"]),
    refusal=st.just("a."),
)
rule_sets = st.lists(st.sampled_from(RULE_POOL), min_size=1, max_size=3, unique_by=lambda r: r.id)


def encode(text: str) -> list[int]:
    return [VOCAB.index(bytes([b])) for b in text.encode()]


@given(
    rules=rule_sets,
    policy=policies,
    strategy=st.sampled_from(["backtrack", "reset", "mask", "none"]),
    salt=st.integers(0, 10_000),
    max_new=st.integers(0, 12),
    greedy=st.booleans(),
    adversarial=st.booleans(),
    prefill=st.lists(st.integers(1, len(VOCAB) - 1), max_size=4),
)
def test_steps_within_bound_and_returned_text_is_safe(
    rules, policy, strategy, salt, max_new, greedy, adversarial, prefill
):  # type: ignore[no-untyped-def]
    compiled, judge = make_judge(rules, policy)
    model = adversarial_model if adversarial else hashed_model(salt)
    run = ReferenceSettings(
        strategy=strategy,
        max_new_tokens=max_new,
        sampling=SamplingConfig(temperature=0.0 if greedy else 1.0),
        seed=salt,
    )
    result = reference_generate(
        model, [1], judge=judge, eos_id=EOS, settings=run, prefill=prefill, encode=encode
    )
    stats = result.stats
    assert result.finish_reason in ("eos", "length", "budget", "refused")
    # Termination: tokens produced (sampled + forced) within len(prefill) + N + B.
    produced = (
        stats.kept_tokens + stats.discarded_tokens if result.finish_reason != "refused" else None
    )
    assert stats.generated_tokens <= len(prefill) + max_new + policy.max_discarded_tokens
    if produced is not None:
        assert produced <= len(prefill) + max_new + policy.max_discarded_tokens
    if not prefill:
        assert stats.generated_tokens <= max_new + policy.max_discarded_tokens
    assert (
        stats.kept_tokens == len(result.tokens) <= len(prefill) + max_new
        or result.finish_reason == "refused"
    )
    if strategy in ("backtrack", "reset"):
        # Soundness: returned text passes the spec, as a finished text.
        assert compiled.scan(result.text) == [] or result.finish_reason == "refused"
        assert stats.discarded_tokens <= policy.max_discarded_tokens + len(prefill) + max_new
    if strategy == "backtrack":
        # Bounded rollback.
        for event in result.events:
            if event.kind == "rollback":
                assert 0 <= event.to_token < event.from_token
                assert event.from_token - event.to_token <= policy.max_rollback_tokens
        assert stats.max_rollback_tokens <= policy.max_rollback_tokens
    if result.finish_reason == "refused":
        assert any(event.kind == "exhausted" for event in result.events)
        assert result.text == policy.refusal


@given(
    rules=rule_sets, salt=st.integers(0, 10_000), max_new=st.integers(1, 12), greedy=st.booleans()
)
def test_transparency(rules, salt, max_new, greedy):  # type: ignore[no-untyped-def]
    """When plain decoding never violates, backtrack returns exactly the same tokens."""
    policy = BacktrackPolicy(checkpoint="token")
    _, judge = make_judge(rules, policy)
    sampling = SamplingConfig(temperature=0.0 if greedy else 1.0, top_p=0.9)
    plain = reference_generate(
        hashed_model(salt),
        [1],
        judge=judge,
        eos_id=EOS,
        settings=ReferenceSettings(
            strategy="none", max_new_tokens=max_new, sampling=sampling, seed=salt
        ),
    )
    shielded = reference_generate(
        hashed_model(salt),
        [1],
        judge=judge,
        eos_id=EOS,
        settings=ReferenceSettings(
            strategy="backtrack", max_new_tokens=max_new, sampling=sampling, seed=salt
        ),
    )
    if not plain.events:  # plain decoding did not violate
        assert shielded.tokens == plain.tokens
        assert shielded.finish_reason == plain.finish_reason
        assert shielded.stats.rollbacks == 0


def test_backtrack_repairs_adversarial_greedy_model() -> None:
    policy = BacktrackPolicy(
        checkpoint="word", max_rollback_tokens=6, max_retries=3, max_discarded_tokens=40
    )
    compiled, judge = make_judge([RULE_POOL[0]], policy)
    run = ReferenceSettings(
        strategy="backtrack", max_new_tokens=10, sampling=SamplingConfig(temperature=0.0)
    )
    plain = reference_generate(
        adversarial_model,
        [1],
        judge=judge,
        eos_id=EOS,
        settings=ReferenceSettings(
            strategy="none", max_new_tokens=10, sampling=SamplingConfig(temperature=0.0)
        ),
    )
    assert compiled.scan(plain.text), "the adversarial model must violate without the shield"
    repaired = reference_generate(adversarial_model, [1], judge=judge, eos_id=EOS, settings=run)
    assert compiled.scan(repaired.text) == []
    assert repaired.stats.rollbacks >= 1
    assert repaired.finish_reason in ("length", "eos")


def test_greedy_retry_differs() -> None:
    """Progress under greedy decoding: the retry after a rollback never repeats the failed token."""
    policy = BacktrackPolicy(
        checkpoint="token", max_rollback_tokens=4, max_retries=3, max_discarded_tokens=30
    )
    _, judge = make_judge([RULE_POOL[0]], policy)
    run = ReferenceSettings(
        strategy="backtrack", max_new_tokens=8, sampling=SamplingConfig(temperature=0.0)
    )
    result = reference_generate(adversarial_model, [1], judge=judge, eos_id=EOS, settings=run)
    assert result.stats.rollbacks >= 1
    assert b"abc" not in b"".join(VOCAB[t] for t in result.tokens)


@given(rules=rule_sets, policy=policies, salt=st.integers(0, 10_000), max_new=st.integers(0, 14))
def test_stream_never_takes_text_back(rules, policy, salt, max_new):  # type: ignore[no-untyped-def]
    """Released pieces concatenate to the final text (TextStream raises if one was taken back)."""
    _, judge = make_judge(rules, policy)
    pieces: list[str] = []
    result = reference_generate(
        hashed_model(salt),
        [1],
        judge=judge,
        eos_id=EOS,
        settings=ReferenceSettings(max_new_tokens=max_new, seed=salt),
        encode=encode,
        stream=pieces.append,
    )
    assert "".join(pieces) == result.text
