"""Transparency where it could fail: plain decoding was clean although violating tokens were
possible at its steps, so any shield interference (a mask, a ban, another key) would show."""

from __future__ import annotations

from shield.policy import BacktrackPolicy
from shield.reference import ReferenceSettings, reference_generate
from shield.sampling import SamplingConfig
from tests.shield.test_reference import EOS, RULE_POOL, hashed_model, make_judge

#: Seeds tried; each is one prompt, one toy model and one sampling seed.
SALTS = range(200)


def _exposed(judge, tokens) -> bool:  # type: ignore[no-untyped-def]
    """Whether some step of ``tokens`` had a token that would have made a rule fire."""
    state = judge.initial()
    for token in tokens:
        if not judge.allowed(state, (EOS,)).all():
            return True
        state, _ = judge.feed(state, token)
    return False


def test_backtrack_equals_plain_when_plain_was_clean_but_exposed() -> None:
    _, judge = make_judge(RULE_POOL, BacktrackPolicy(checkpoint="token"))
    # No top-p cut: every token has some probability, so a violating one was always possible.
    sampling = SamplingConfig(temperature=1.0, top_p=None)
    cases = []  # (salt, runs) of clean plain runs in which a violating token was possible
    for salt in SALTS:
        runs = {
            strategy: reference_generate(
                hashed_model(salt),
                [1],
                judge=judge,
                eos_id=EOS,
                settings=ReferenceSettings(
                    strategy=strategy, max_new_tokens=8, sampling=sampling, seed=salt
                ),
            )
            for strategy in ("none", "backtrack", "reset")
        }
        if not runs["none"].events and _exposed(judge, runs["none"].tokens):
            cases.append((salt, runs))
    # The scenario: enough clean runs in which the shield could have interfered.
    assert len(cases) >= 20, len(cases)
    for salt, runs in cases:
        plain = runs["none"]
        for strategy in ("backtrack", "reset"):
            assert runs[strategy].tokens == plain.tokens, (salt, strategy)
            assert runs[strategy].finish_reason == plain.finish_reason
            assert runs[strategy].stats.rollbacks == 0
