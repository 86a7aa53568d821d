"""Helpers of the grammar-export tests: llguidance over bytes and over SmolLM2, random specs.

llguidance is driven as an engine drives it: an ``LLMatcher`` over a tokenizer. A tokenizer of
the 256 single bytes (plus EOS) lets a test feed any byte string, so a grammar's language is
compared byte for byte with the shield's verdict; the bundled SmolLM2 tokenizer (rebuilt from the
GGUF's metadata, nothing downloaded) compares token masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import llguidance
import numpy as np
from hypothesis import strategies as st

import shield
from shield.automata.alphabet import END
from shield.lifting import TokenShield
from shield.rules import (
    AfterRule,
    AtMostRule,
    LiteralRule,
    MatchOptions,
    MaxLengthRule,
    RegexRule,
    Rule,
    WordsRule,
)

#: Bytes an engine can never produce through llguidance: it marks special tokens with 0xFF.
RESERVED_BYTE = 0xFF


class _ByteVocabulary:
    """The 256 one-byte tokens and an EOS token, in llguidance's tokenizer-wrapper protocol."""

    def __init__(self) -> None:
        self.tokens = [bytes([b]) for b in range(256)] + [b""]
        self.eos_token_id = 256
        self.bos_token_id = None
        self.special_token_ids = [256]

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text.encode("utf-8") if isinstance(text, str) else text)


@cache
def byte_tokenizer() -> Any:
    """An ``LLTokenizer`` whose token ``b`` is the byte ``b`` (EOS is 256)."""
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteVocabulary()))


def matcher(grammar: str, tokenizer: Any) -> Any:
    """An ``LLMatcher`` for a Lark grammar; fails the test on a grammar error."""
    compiled = llguidance.LLMatcher.grammar_from_lark(grammar)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(compiled)
    assert not is_error, messages
    built = llguidance.LLMatcher(tokenizer, compiled, log_level=0)
    assert not built.is_error(), built.get_error()
    return built


def llguidance_accepts(byte_matcher: Any, data: bytes) -> bool:
    """Whether the grammar accepts ``data`` as a whole text (every byte, then EOS)."""
    byte_matcher.reset()
    consumed = byte_matcher.try_consume_tokens(list(data))
    return bool(consumed == len(data) and byte_matcher.is_accepting())


def shield_accepts(compiled: shield.Shield, data: bytes) -> bool:
    """Whether the shield finds ``data`` clean as a whole text (END read after it)."""
    return compiled.first_violation(data, final=True) is None


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@cache
def smollm2_tokenizers() -> tuple[Any, Any, int]:
    """The bundled SmolLM2 tokenizer: ``(tokenizers.Tokenizer, LLTokenizer, EOS id)``."""
    import tokenizers

    from decoders.paths import bundled_model_path
    from decoders.sources import gguf_tokenizer, open_gguf_checked

    text, _ = gguf_tokenizer(open_gguf_checked(bundled_model_path()))
    hf = tokenizers.Tokenizer.from_str(text)
    eos = hf.token_to_id("<|im_end|>")
    return hf, llguidance.LLTokenizer(text, eos_token=eos), eos


# -- random small specs -----------------------------------------------------------------------

ALPHABET = "abc1 "
#: Pieces random texts are made of: the alphabet, its obfuscations, and bytes that are not
#: characters (a lone continuation byte, a truncated two- and three-byte sequence).
_CHARACTERS = ("a", "b", "c", "1", " ", "A", "B", "4", "@", ".", "-", "_", "é", "\u0430", "\u200b")
TEXT_PIECES: tuple[bytes, ...] = (
    *(s.encode("utf-8") for s in _CHARACTERS),
    *(b"\x80", b"\xc3", b"\xe2\x82", b"\n"),
)

_ATOMS = ("a", "b", "c", "1", " ", "[ab]", "[^a]", ".", "\\w", "\\W", "\\d")
_ASSERTS = ("\\b", "\\B", "^", "$")


@dataclass(frozen=True)
class SmallSpec:
    """A spec-like value for ``shield.compile``."""

    name: str
    rules: tuple[Rule, ...]
    policy: shield.BacktrackPolicy = field(
        default_factory=lambda: shield.BacktrackPolicy(refusal="Q")
    )


@st.composite
def regexes(draw: st.DrawFn, depth: int = 2) -> str:
    """Small regexes over the alphabet with classes, assertions, groups and quantifiers."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("atom", "atom", "assert", "group") if depth else ("atom",)))
        if kind == "assert":
            parts.append(draw(st.sampled_from(_ASSERTS)))
            continue
        if kind == "group":
            branches = draw(st.lists(regexes(depth - 1), min_size=1, max_size=2))
            piece = "(" + "|".join(branches) + ")"
        else:
            piece = draw(st.sampled_from(_ATOMS))
        parts.append(piece + draw(st.sampled_from(("", "", "?", "*", "+", "{1,2}"))))
    return "".join(parts)


@st.composite
def patterns(draw: st.DrawFn, rule_id: str) -> WordsRule | RegexRule | LiteralRule:
    """A words, literal or regex pattern with random match options."""
    kind = draw(st.sampled_from(("words", "literal", "regex")))
    whole = draw(st.booleans())
    fold = draw(st.booleans())
    if kind == "regex":
        return RegexRule(
            id=rule_id,
            pattern=draw(regexes()),
            match=MatchOptions(case_insensitive=fold, whole_word=whole),
        )
    normalize = draw(
        st.frozensets(st.sampled_from(("leet", "repeats", "separators", "zero_width")), max_size=2)
    )
    match = MatchOptions(case_insensitive=fold, whole_word=whole, normalize=normalize)
    word = st.text(alphabet="abc1", min_size=1, max_size=3)
    if kind == "literal":
        return LiteralRule(id=rule_id, literal=draw(word), match=match)
    return WordsRule(
        id=rule_id, words=tuple(draw(st.lists(word, min_size=1, max_size=3))), match=match
    )


@st.composite
def rules(draw: st.DrawFn, rule_id: str) -> Rule:
    """One automaton rule of any kind."""
    kind = draw(st.sampled_from(("pattern", "pattern", "after", "at_most", "max_length")))
    if kind == "after":
        return AfterRule(
            id=rule_id, trigger=draw(patterns(rule_id)), forbid=draw(patterns(rule_id))
        )
    if kind == "at_most":
        return AtMostRule(
            id=rule_id, pattern=draw(patterns(rule_id)), count=draw(st.integers(0, 2))
        )
    if kind == "max_length":
        return MaxLengthRule(id=rule_id, max_bytes=draw(st.integers(1, 12)))
    return draw(patterns(rule_id))


@st.composite
def small_specs(draw: st.DrawFn) -> SmallSpec:
    """One to three random automaton rules."""
    count = draw(st.integers(1, 3))
    return SmallSpec("random", tuple(draw(rules(f"r{i}")) for i in range(count)))


def texts(max_pieces: int = 12) -> st.SearchStrategy[bytes]:
    """Byte strings made of :data:`TEXT_PIECES`."""
    return st.lists(st.sampled_from(TEXT_PIECES), max_size=max_pieces).map(b"".join)


# -- UTF-8 -----------------------------------------------------------------------------------

#: States of the UTF-8 validator: 0 between characters, 1..7 inside one, 8 dead.
UTF8_DEAD = 8


def _utf8_table() -> np.ndarray:
    """int [9, 256]: the UTF-8 validator (RFC 3629: no overlongs, surrogates or > U+10FFFF)."""
    table = np.full((9, 256), UTF8_DEAD, dtype=np.int64)
    table[0, 0x00:0x80] = 0
    table[0, 0xC2:0xE0] = 1
    table[0, 0xE1:0xF0] = 2
    table[0, 0xE0] = 4
    table[0, 0xED] = 5
    table[0, 0xF1:0xF4] = 3
    table[0, 0xF0] = 6
    table[0, 0xF4] = 7
    table[1, 0x80:0xC0] = 0
    table[2, 0x80:0xC0] = 1
    table[3, 0x80:0xC0] = 2
    table[4, 0xA0:0xC0] = 1
    table[5, 0x80:0xA0] = 1
    table[6, 0x90:0xC0] = 2
    table[7, 0x80:0x90] = 2
    return table


UTF8_TABLE = _utf8_table()


@cache
def utf8_after(token_bytes: tuple[bytes, ...]) -> np.ndarray:
    """int [9, V]: the validator's state after each token, from each state."""
    out = np.empty((9, len(token_bytes)), dtype=np.int64)
    for u in range(9):
        for v, data in enumerate(token_bytes):
            state = u
            for byte in data:
                state = UTF8_TABLE[state, byte]
            out[u, v] = state
    return out


def live_states(tokens: TokenShield) -> list[np.ndarray]:
    """Per component, bool [S, 9]: from (state, UTF-8 state), some continuation ends clean.

    The continuation must keep the text valid UTF-8 and avoid 0xFF, as llguidance's must. A
    non-violating pair that is not live is a *trap*: every continuation violates. llguidance's
    mask blocks a token that enters one; the shield's one-step mask blocks a later token.
    """
    out = []
    for c, n in enumerate(tokens.state_counts.tolist()):
        table = tokens.byte_transitions[c, :n, :RESERVED_BYTE]  # [S, 255]
        bad = tokens.violating[c, :n]
        end_ok = ~bad & ~bad[tokens.byte_transitions[c, :n, END]]
        # Bytes that act alike on the component and on the validator share one column.
        columns = np.concatenate([table, UTF8_TABLE[:, :RESERVED_BYTE]], axis=0)
        _, reps = np.unique(columns, axis=1, return_index=True)
        live = np.zeros((n, 9), dtype=bool)
        live[:, 0] = end_ok
        for _ in range(9 * n + 1):  # each round adds a pair, or stops
            grown = live.copy()
            for u in range(8):
                targets = UTF8_TABLE[u, reps]
                keep = targets != UTF8_DEAD
                if keep.any():
                    reach = live[table[:, reps[keep]], targets[keep]].any(axis=1)
                    grown[:, u] |= reach & ~bad
            if (grown == live).all():
                break
            live = grown
        out.append(live)
    return out


def _words_of(rule: Rule) -> list[str]:
    if isinstance(rule, WordsRule):
        return list(rule.words)
    if isinstance(rule, LiteralRule):
        return [rule.literal]
    if isinstance(rule, AfterRule):
        return _words_of(rule.trigger) + _words_of(rule.forbid)
    if isinstance(rule, AtMostRule):
        return _words_of(rule.pattern) * 2
    return []


def texts_for(spec: SmallSpec, max_pieces: int = 12) -> st.SearchStrategy[bytes]:
    """Byte strings of :data:`TEXT_PIECES` and the spec's own words (so that rules fire)."""
    words = tuple(w.encode("utf-8") for rule in spec.rules for w in _words_of(rule))
    pieces = st.sampled_from(TEXT_PIECES + words) if words else st.sampled_from(TEXT_PIECES)
    return st.lists(pieces, max_size=max_pieces).map(b"".join)
