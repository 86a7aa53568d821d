"""A staged rule on the real SmolLM2 vocabulary: device walk = host walk = ``Shield.scan``.

A rule of the library's 30 core profanities through all seven normalisations compiles to a
composed automaton (:func:`shield.automata.compiler.is_staged`). Lifted onto the bundled
tokenizer, the JAX tables (:func:`decoders.shield_tables.device_tables`) must walk each token as
the host's :class:`~shield.lifting.TokenShield` does, block the same tokens as its
``allowed_mask``, and reach the verdict ``Shield.scan`` gives the text.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shield
from decoders import shield_tables as device
from decoders.loading import Model
from decoders.shield_tables import device_tables
from decoders.tokenizer import Tokenizer
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.rules import NORMALIZATIONS, MatchOptions, WordsRule
from tests.robustness.evasion_unicode import core_words
from tests.shield.helpers import Spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_model")]

TEXTS = (
    "What a lovely autumn day.",
    "you are a f.u.c.k.i.n.g idiot",
    "\uff26\uff55\uff43\uff4b this",  # full-width
    "that \u0455hit and b\u200bitch",  # Cyrillic s, a zero-width space
    "x\u200bfuck is one word",  # displays as xfuck: not a list word (the staged law)
    "fu\u0301ck and c\u00fant",  # a combining mark, a precomposed accent
    "The Samsung Galaxy A55 has a good camera.",
    "sh1t, that fuuuck was a B1TCH move",
)

walk_tokens = jax.jit(device.walk_tokens)
violating_tokens = jax.jit(device.violating_tokens)
end_step = jax.jit(device.end_step)
violates = jax.jit(device.violates)


@pytest.fixture(scope="module")
def setup(real_model: tuple[Model, Tokenizer, float]) -> tuple[shield.Shield, Judge, object, int]:
    model, tokenizer, _ = real_model
    words = core_words()  # the library's 30 core words (profanity_core.txt)
    match = MatchOptions(
        case_insensitive=True, whole_word=True, normalize=frozenset(NORMALIZATIONS)
    )
    rule = WordsRule(id="core", words=words, match=match)
    guard = shield.compile(Spec("core", (rule,), BacktrackPolicy(refusal="Sorry.")), cache=None)
    assert guard.compiled[0].composed is not None  # the scenario: a staged rule
    judge = Judge(guard, guard.lift(tokenizer.backend))
    eos = model.config.eos_token_ids
    return guard, judge, device_tables(judge, model.config.vocab_size, eos), tokenizer


def test_device_walk_equals_host_walk_and_scan(setup: tuple) -> None:
    guard, judge, tables, tokenizer = setup
    host = judge.tables
    assert len(host.composed) == 1 and tables.components == 1  # one composed component
    valid = np.asarray(tables.valid)[: host.token_matrix.shape[0]]
    flagged = 0
    for text in TEXTS:
        ids = tokenizer.encode(text, add_bos=False)
        assert tokenizer.decode(ids).encode() == text.encode()  # the tokens spell the text
        states = np.asarray(host.initial)
        on_device = jnp.asarray(np.asarray(host.initial, np.int32)[None, :])
        for step, token in enumerate(ids):
            if step % 4 == 0:  # the whole vocabulary's verdicts, from some of the states
                blocked = np.asarray(violating_tokens(tables, on_device))[0, : len(valid)]
                np.testing.assert_array_equal(blocked & valid, ~host.allowed_mask(states) & valid)
            states = host.step_token(states, token)
            on_device = walk_tokens(tables, on_device, jnp.asarray([token], jnp.int32))
            np.testing.assert_array_equal(np.asarray(on_device)[0], states)
        ended = host.end_states(states)
        np.testing.assert_array_equal(np.asarray(end_step(tables, on_device))[0], ended)
        verdict = bool(np.asarray(violates(tables, end_step(tables, on_device)))[0])
        assert verdict == host.violates(ended) == bool(guard.scan(text)), text
        flagged += verdict
    assert 0 < flagged < len(TEXTS)  # both verdicts happened
