"""The shield's device tables agree with the host's token shield, on random specs and vocabularies.

The JAX decoder never asks the host whether a token violates: it walks the ``[C, S, 257]`` tables of
:mod:`decoders.shield_tables` on the device. These properties check each device walk against the
host's :class:`~shield.lifting.TokenShield` (the walks the reference decoder uses), from reachable
monitor states (the states after random byte strings), over random compiled specs and three kinds
of vocabulary: the tiny tokenizer's (multi-byte merges), its narrow restriction (every token but
``a`` and ``b`` is special) and random byte-string vocabularies (empty and special tokens, non-ASCII
bytes, sentence ends, and model logits past the tokenizer's ids).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from decoders import shield_tables as device
from decoders.shield_tables import ShieldTables, device_tables, shield_tables
from shield.checkpoints import closes_sentence
from shield.judge import Judge
from shield.lifting import MonitorState, TokenShield
from shield.policy import BacktrackPolicy
from shield.rules import ClassifierRule
from tests.decoders.differential_support import (
    EOS,
    DrawChooser,
    chance,
    compile_rules,
    draw_rules,
    lift,
    reachable_states,
    tokenizer,
)

ROWS = 6
#: Bytes of random vocabularies and walks: the pools' letters, sentence ends, whitespace, and the
#: UTF-8 bytes of "é", "ç" and "…".
ALPHABET = tuple(sorted(set(b"thelorcanqz .!?\n\tab") | set("éç…".encode())))
#: Random vocabularies: this many tokens, and the model has EXTRA more logits than the tokenizer.
RANDOM_VOCAB, EXTRA, LONGEST = 40, 2, 5

# Jitted as in the decoder's step (where loop bounds are traced); one compilation per table shape.
walk_tokens = jax.jit(device.walk_tokens)
violating_tokens = jax.jit(device.violating_tokens)
end_step = jax.jit(device.end_step)
violates = jax.jit(device.violates)


@dataclasses.dataclass(frozen=True)
class Lifted:
    """A compiled spec on a vocabulary: the host's token shield and judge, and the device tables."""

    judge: Judge
    tables: ShieldTables
    vocab: int  # the model's number of logits (>= the tokenizer's)
    eos: tuple[int, ...]

    @property
    def host(self) -> TokenShield:
        return self.judge.tables


texts = st.lists(st.sampled_from(ALPHABET), max_size=12).map(bytes)
pieces = st.lists(st.sampled_from(ALPHABET), max_size=LONGEST).map(bytes)
longest = st.lists(st.sampled_from(ALPHABET), min_size=LONGEST, max_size=LONGEST).map(bytes)


@st.composite
def lifted_specs(draw: st.DrawFn) -> Lifted:
    """A random spec (the differential tests' rule pools) lifted onto a random kind of vocabulary."""
    choose = DrawChooser(draw)
    narrow = chance(choose, 25)
    rules = tuple(r for r in draw_rules(choose, narrow) if not isinstance(r, ClassifierRule))
    compiled = compile_rules(rules, BacktrackPolicy(refusal=""))  # the empty text passes them all
    kind = draw(st.sampled_from(("tiny", "random")))
    eos: tuple[int, ...]
    if kind == "tiny":
        token_shield = lift(compiled, narrow)
        vocab, eos = tokenizer().vocab_size, EOS
    else:
        # One token of LONGEST bytes, so that every random vocabulary has the same table shapes.
        size = RANDOM_VOCAB - 2
        words = [draw(longest), *draw(st.lists(pieces, min_size=size, max_size=size))]
        special = [True] + [not w and draw(st.booleans()) for w in words]
        token_shield = compiled.lift([b"", *words], special=special)
        vocab, eos = RANDOM_VOCAB + EXTRA, (0,)
    judge = Judge(compiled, token_shield)
    return Lifted(judge=judge, tables=device_tables(judge, vocab, eos), vocab=vocab, eos=eos)


def states_of(lifted: Lifted, walks: list[bytes]) -> tuple[list[MonitorState], jnp.ndarray]:
    states = reachable_states(lifted.host, walks)
    return states, jnp.asarray(np.array(states, dtype=np.int32).reshape(len(walks), -1))


@given(lifted=lifted_specs(), walks=st.lists(texts, min_size=ROWS, max_size=ROWS), data=st.data())
def test_walk_tokens_equals_step_token(
    lifted: Lifted, walks: list[bytes], data: st.DataObject
) -> None:
    """One token per row from reachable states: the device walk is the host's ``step_token``."""
    real = len(lifted.host.token_bytes)
    tokens = data.draw(st.lists(st.integers(0, real - 1), min_size=ROWS, max_size=ROWS))
    states, device_states = states_of(lifted, walks)
    got = np.asarray(walk_tokens(lifted.tables, device_states, jnp.asarray(tokens, jnp.int32)))
    for row, (state, token) in enumerate(zip(states, tokens, strict=True)):
        expected = lifted.host.step_token(np.asarray(state, np.int32), token)
        np.testing.assert_array_equal(got[row], expected, err_msg=f"row {row}, token {token}")


@given(lifted=lifted_specs(), walks=st.lists(texts, min_size=ROWS, max_size=ROWS))
def test_violating_tokens_equal_the_host_mask(lifted: Lifted, walks: list[bytes]) -> None:
    """Every token of the vocabulary from each row's state: the device's violating set is the
    complement of the host's ``allowed_mask``, plus the ids that are never sampled (special
    tokens but EOS, and ids past the tokenizer's vocabulary); with the EOS columns replaced by the
    END check, it is the mask the reference decoder removes (``~Judge.allowed | never``)."""
    host, judge, real = lifted.host, lifted.judge, len(lifted.host.token_bytes)
    states, device_states = states_of(lifted, walks)
    bad = violating_tokens(lifted.tables, device_states)
    ends_badly = violates(lifted.tables, end_step(lifted.tables, device_states))
    decoder_mask = np.asarray(bad.at[:, jnp.asarray(lifted.eos)].set(ends_badly[:, None]))
    bad = np.asarray(bad)
    never = judge.never(lifted.eos)
    for row, state in enumerate(states):
        array = np.asarray(state, np.int32)
        expected = np.ones(lifted.vocab, dtype=bool)  # ids past the tokenizer are never sampled
        expected[:real] = ~host.allowed_mask(array) | never
        np.testing.assert_array_equal(bad[row], expected, err_msg=f"row {row}")
        expected[:real] = ~judge.allowed(state, lifted.eos) | never
        np.testing.assert_array_equal(decoder_mask[row], expected, err_msg=f"row {row} (END)")


@given(
    lifted=lifted_specs(),
    walks=st.lists(texts, min_size=ROWS, max_size=ROWS),
    padding=st.sampled_from((0.0, 1e9)),
)
def test_violating_tokens_do_not_depend_on_how_trie_levels_are_grouped(
    lifted: Lifted, walks: list[bytes], padding: float
) -> None:
    """No padding (one loop per level where levels shrink), or all levels in one loop padded to the widest
    (unbounded padding): the same violating set as the host's, from the same states."""
    judge = lifted.judge
    tables = shield_tables(
        judge.tables, lifted.vocab, judge.never(lifted.eos), trie_padding=padding
    )
    levels = judge.tables.byte_trie[2]
    steps = sum(parent.size for parent in tables.trie.parent)
    if padding == 0:  # a group is padded to the level before it too: shrinking levels pad
        nodes, groups = sum(hi - lo for lo, hi in levels), len(tables.trie.parent)
        assert steps == nodes or groups == len(levels), "padded steps though none were allowed"
    else:
        assert len(tables.trie.parent) == min(len(levels), 1), "not one loop over every level"
    states, device_states = states_of(lifted, walks)
    bad = np.asarray(violating_tokens(tables, device_states))
    real, never = len(lifted.host.token_bytes), judge.never(lifted.eos)
    for row, state in enumerate(states):
        expected = np.ones(lifted.vocab, dtype=bool)
        expected[:real] = ~lifted.host.allowed_mask(np.asarray(state, np.int32)) | never
        np.testing.assert_array_equal(bad[row], expected, err_msg=f"row {row}")


@given(lifted=lifted_specs(), walks=st.lists(texts, min_size=ROWS, max_size=ROWS))
def test_end_step_and_violates_equal_the_host(lifted: Lifted, walks: list[bytes]) -> None:
    """``violates`` and ``end_step`` are the host's ``violates``, ``end_states`` and ``end_violates``."""
    host = lifted.host
    states, device_states = states_of(lifted, walks)
    now = np.asarray(violates(lifted.tables, device_states))
    ended = end_step(lifted.tables, device_states)
    after_end = np.asarray(ended)
    end_violates = np.asarray(violates(lifted.tables, ended))
    for row, state in enumerate(states):
        array = np.asarray(state, np.int32)
        assert now[row] == host.violates(array)
        np.testing.assert_array_equal(after_end[row], host.end_states(array))
        assert end_violates[row] == host.end_violates(array)


@given(lifted=lifted_specs())
def test_token_tables_equal_the_host_tokens(lifted: Lifted) -> None:
    """Per token id: its bytes and length, whether it may be sampled, and whether it closes a
    sentence (the device's ``closes_sentence`` table against :func:`shield.checkpoints.closes_sentence`)."""
    tables, pieces_of = lifted.tables, lifted.host.token_bytes
    token_bytes, lengths = np.asarray(tables.token_bytes), np.asarray(tables.token_lengths)
    valid, closes = np.asarray(tables.valid), np.asarray(tables.closes_sentence)
    never = lifted.judge.never(lifted.eos)
    assert valid.shape == closes.shape == lengths.shape == (lifted.vocab,)
    for token in range(lifted.vocab):
        if token >= len(pieces_of):  # logits past the tokenizer: no bytes, never sampled
            assert (lengths[token], valid[token], closes[token]) == (0, False, False)
            continue
        piece = pieces_of[token]
        assert bytes(token_bytes[token, : lengths[token]].astype(np.uint8).tolist()) == piece
        assert lengths[token] == len(piece)
        assert valid[token] == (not never[token])
        assert closes[token] == closes_sentence(piece), f"token {token} {piece!r}"


def test_tables_are_those_of_shield_tables() -> None:
    """``device_tables`` builds the tables once per judge and vocabulary with ``shield_tables``."""
    compiled = compile_rules((), BacktrackPolicy())
    judge = Judge(compiled, lift(compiled, narrow=False))
    vocab = tokenizer().vocab_size
    first = device_tables(judge, vocab, EOS)
    assert device_tables(judge, vocab, EOS) is first
    again = shield_tables(judge.tables, vocab, judge.never(EOS))
    assert jax.tree.structure(first) == jax.tree.structure(again)
    for built, rebuilt in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(np.asarray(built), np.asarray(rebuilt))
