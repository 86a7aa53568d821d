"""Scenarios for the differential tests: the JAX shielded decoder against the reference machine.

One scenario is everything a shielded generation depends on: a spec (automaton and classifier
rules, a policy), a strategy, a sampling rule, a scripted bigram table, three prompts with their
seeds, and a prefill. :func:`draw_scenario` builds one from a :class:`Chooser`, so the same
generator serves Hypothesis (:class:`DrawChooser`, which shrinks) and a plain seeded run
(:class:`RandomChooser`, for the deterministic coverage test).

Shapes are kept fixed so that JAX compiles the shielded loop once per static configuration, not
once per example: one tokenizer, three rows, ten new tokens, 64 cache slots, prompts of three
tokens, and shield tables padded to :data:`COMPONENTS` x :data:`STATES` (:func:`pad_token_shield`:
an extra component that never violates, and unreachable self-looping states). Every spec also
carries two classifier rules that never fire (:data:`QUIET_RULES`: one per sentence, one per window
of :data:`WINDOW` tokens), so the loop's static classifier flags are the same for every spec. Both
paddings are checked to be neutral: the reference decoder gives the same result with the padded
judge as with the judge of the drawn rules alone (:func:`compare_scenario`).

Scorers of the classifier rules are defined here and named ``tests.decoders.differential_support:
NAME``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, Literal, Protocol, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

import shield
from decoders.config import DecodeConfig, ModelConfig
from decoders.loading import Model
from decoders.sampling import row_keys, sample
from decoders.shielded import generate_shielded
from decoders.state import init_state
from decoders.step import decode_logits, prefill
from decoders.tokenizer import Tokenizer, tokenizer_json_from_gguf
from shield.controller import Failure
from shield.errors import SpecError
from shield.judge import Judge
from shield.lifting import MonitorState, TokenShield
from shield.monitor import Shield
from shield.policy import BacktrackPolicy
from shield.reference import ReferenceSettings, reference_generate
from shield.result import GenerationResult
from shield.rules import (
    AfterRule,
    AtMostRule,
    ClassifierRule,
    LiteralRule,
    MatchOptions,
    MaxLengthRule,
    Pattern,
    RegexRule,
    Rule,
    WordsRule,
)
from shield.sampling import SamplingConfig
from tests.decoders.conftest import TEMPLATE, tiny_vocabulary
from tests.decoders.scripted import scripted_model

T = TypeVar("T")

#: The fixed shapes of every differential run (so that JAX compiles once per static setting).
BATCH = 3
MAX_NEW = 10
SLOTS = 64
WINDOW = 3
COMPONENTS = 2
STATES = 1024
EOS = (2, 0)
#: Id of the byte token of byte ``b`` in the tiny vocabulary: 3 specials come first.
BYTE0 = 3
MODULE = "tests.decoders.differential_support"


# -- scorers (importable as "tests.decoders.differential_support:NAME") ----------------------------


def has_q(texts: list[str]) -> list[float]:
    """1 for a text with a ``q``."""
    return [1.0 if "q" in text else 0.0 for text in texts]


def has_z(texts: list[str]) -> list[float]:
    """1 for a text with a ``z`` (graded: 0.6 for one, 1 for more)."""
    return [min(1.0, 0.6 * text.count("z")) for text in texts]


def two_e(texts: list[str]) -> list[float]:
    """1 for a text with at least two ``e``."""
    return [1.0 if text.count("e") >= 2 else 0.25 for text in texts]


def has_bb(texts: list[str]) -> list[float]:
    """1 for a text with ``bb`` (the narrow alphabet's classifier)."""
    return [1.0 if "bb" in text else 0.0 for text in texts]


def has_b(texts: list[str]) -> list[float]:
    """1 for a text with a ``b`` (the narrow alphabet's classifier)."""
    return [1.0 if "b" in text else 0.0 for text in texts]


def quiet(texts: list[str]) -> list[float]:
    """Never unsafe (the padding classifier rules)."""
    return [0.0 for _ in texts]


QUIET_RULES: tuple[ClassifierRule, ...] = (
    ClassifierRule(id="quiet-sentence", scorer=f"{MODULE}:quiet", threshold=0.5, scope="sentence"),
    ClassifierRule(
        id="quiet-window",
        scorer=f"{MODULE}:quiet",
        threshold=0.5,
        scope="window",
        window_tokens=WINDOW,
    ),
)


# -- the tokenizer, the model configuration and the scripted model's scale -------------------------


@functools.cache
def tokenizer() -> Tokenizer:
    """The tiny tokenizer of ``tests/decoders/conftest.py`` (3 specials, 256 bytes, 5 merges)."""
    tokens, merges, types = tiny_vocabulary()
    return Tokenizer(
        tokenizer_json_from_gguf(tokens, merges, types), eos_token_ids=EOS, chat_template=TEMPLATE
    )


@functools.cache
def model_config() -> ModelConfig:
    """The tiny model's shapes (``scripted_model`` makes the hidden size the vocabulary)."""
    return ModelConfig(
        vocab_size=tokenizer().vocab_size,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        rope_theta=1000.0,
        tie_embeddings=False,
        eos_token_ids=EOS,
    )


@functools.cache
def logit_scale() -> np.float32:
    """``c``: a scripted model's logits after token ``t`` are ``c * table[t]``, read off the model.

    A table of ones gives logits equal to ``c``; every row of the batch must give the same value.
    """
    config = model_config()
    ones = np.ones((config.vocab_size, config.vocab_size), np.float32)
    model = scripted_model(config, ones)
    state = init_state(model.config, DecodeConfig(batch_size=BATCH, max_slots=SLOTS))
    tokens = jnp.asarray([[5], [120], [263]], jnp.int32)
    state = prefill(
        model.params, model.config, state, tokens, jnp.ones((BATCH,), jnp.int32), window=SLOTS
    )
    logits, _ = decode_logits(model.params, model.config, state, window=SLOTS)
    values = np.unique(np.asarray(logits))
    assert values.shape == (1,), f"a scripted model's scale is not constant: {values[:4]}"
    return np.float32(values[0])


# -- choosers: one generator for Hypothesis and for seeded runs ------------------------------------


class Chooser(Protocol):
    """Where a scenario's choices come from."""

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options`` (the first is the simplest)."""
        ...

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high]`` (``low`` is the simplest)."""
        ...


class RandomChooser:
    """Choices from a seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.random.randrange(len(options))]

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)


class DrawChooser:
    """Choices drawn by Hypothesis (``st.composite``'s ``draw``); they shrink to the first option.

    Options and small ranges are drawn with ``sampled_from``, which is uniform: ``st.integers``
    draws its lower bound about a third of the time, which made a third of the examples spend
    their whole budget on the first rollback.
    """

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self.draw = draw

    def choice(self, options: Sequence[T]) -> T:
        from hypothesis import strategies as st

        return self.draw(st.sampled_from(options))  # type: ignore[no-any-return]

    def integer(self, low: int, high: int) -> int:
        from hypothesis import strategies as st

        if high - low < 256:
            return self.draw(st.sampled_from(range(low, high + 1)))  # type: ignore[no-any-return]
        return self.draw(st.integers(low, high))  # type: ignore[no-any-return]


def chance(choose: Chooser, percent: int) -> bool:
    """True with probability ``percent`` / 100 (shrinks to False)."""
    return choose.integer(0, 99) >= 100 - percent


# -- rules ----------------------------------------------------------------------------------------

#: Pools of the full vocabulary: texts the scripted table is biased toward. "né" and "é" are
#: non-ASCII: their UTF-8 bytes are separate byte tokens of the tiny vocabulary.
WORDS = ("the", "hell", "né", "or", "cat", "he", "qe", "za", "été")
LITERALS = ("ll", "e t", "é", "or", "q", "th", "a.", "ç")
#: Regexes with strings they match (the table is biased toward those).
REGEXES = (
    ("t[aeiou]", "te"),
    ("o+r", "oor"),
    ("h.l", "hel"),
    ("[qz]e", "ze"),
    ("e\\.", "e."),
    ("\\bthe\\b", "the"),
    ("n[éa]", "né"),
    ("(?i)CA", "ca"),
    ("[éè]t", "ét"),
)
#: Pools of the narrow vocabulary (text tokens "a" and "b" only).
NARROW_WORDS = ("a", "b", "ab", "ba", "aa", "bab")
NARROW_LITERALS = ("aa", "bb", "ab", "aba")
NARROW_REGEXES = (("a[ab]", "ab"), ("b+a", "bba"), ("(ab){2}", "abab"), ("ba*b", "bab"))
NARROW_TEXT = (ord("a"), ord("b"))
REFUSALS = ("No.", "Sorry!", "x", "b")
SCORERS = ("has_q", "has_z", "two_e")
NARROW_SCORERS = ("has_b", "has_bb")
PREFILLS = ("", "the", "né", "so ", "hell", "q.", "cat or", "za")
NARROW_PREFILLS = ("", "a", "ab", "ba", "aab")
CHECKPOINTS = ("token", "word", "sentence")
SCOPES: tuple[Literal["sentence", "window", "response"], ...] = ("sentence", "window", "response")
NARROW_SCOPES = SCOPES[2], SCOPES[0], SCOPES[1]  # response first: it makes narrow rows stuck
STRATEGIES = ("backtrack", "reset", "mask")
#: (temperature, top_p): greedy, then sampled with and without a nucleus.
SAMPLINGS: tuple[tuple[float, float | None], ...] = ((0.0, None), (1.0, 0.9), (1.0, None))
#: max_retries is also the device's number of ban slots (a static shape): two values only.
RETRIES = (2, 4)


def _match(choose: Chooser, whole_word_percent: int) -> MatchOptions:
    return MatchOptions(
        whole_word=chance(choose, whole_word_percent), case_insensitive=chance(choose, 8)
    )


def draw_pattern(choose: Chooser, rule_id: str, narrow: bool) -> Pattern:
    """A words, literal or regex pattern from the pools."""
    kind = choose.choice(("words", "literal", "regex"))
    if kind == "words":
        pool = NARROW_WORDS if narrow else WORDS
        first = choose.choice(pool)
        words = (first, choose.choice(pool)) if chance(choose, 30) else (first,)
        return WordsRule(id=rule_id, words=tuple(dict.fromkeys(words)), match=_match(choose, 50))
    if kind == "literal":
        literal = choose.choice(NARROW_LITERALS if narrow else LITERALS)
        return LiteralRule(id=rule_id, literal=literal, match=_match(choose, 25))
    pattern, _ = choose.choice(NARROW_REGEXES if narrow else REGEXES)
    return RegexRule(id=rule_id, pattern=pattern)


def draw_rules(choose: Chooser, narrow: bool) -> tuple[Rule, ...]:
    """One to three automaton rules, then up to two classifier rules."""
    rules: list[Rule] = []
    for index in range(choose.integer(1, 3)):
        kind = choose.choice(("pattern", "pattern", "after", "at_most", "max_length"))
        rule_id = f"r{index}"
        if kind == "pattern":
            rules.append(draw_pattern(choose, rule_id, narrow))
        elif kind == "after":
            rules.append(
                AfterRule(
                    id=rule_id,
                    trigger=draw_pattern(choose, f"{rule_id}-trigger", narrow),
                    forbid=draw_pattern(choose, f"{rule_id}-forbid", narrow),
                )
            )
        elif kind == "at_most":
            rules.append(
                AtMostRule(
                    id=rule_id,
                    pattern=draw_pattern(choose, f"{rule_id}-pattern", narrow),
                    count=choose.integer(0, 2),
                )
            )
        else:
            sizes = (2, 3, 5) if narrow else (8, 14, 24)
            rules.append(MaxLengthRule(id=rule_id, max_bytes=choose.choice(sizes)))
    # In the narrow alphabet a response-scope classifier makes the END check fail after a "b":
    # with a rule that every further token violates, a position is a dead end (a stuck row).
    for index in range(choose.choice((0, 1, 1, 2))):
        scope = choose.choice(NARROW_SCOPES if narrow else SCOPES)
        scorer = choose.choice(NARROW_SCORERS if narrow else SCORERS)
        rules.append(
            ClassifierRule(
                id=f"c{index}",
                scorer=f"{MODULE}:{scorer}",
                threshold=0.5,
                scope=scope,
                window_tokens=WINDOW if scope == "window" else None,
            )
        )
    return tuple(rules)


def spec_texts(rules: Sequence[Rule]) -> list[str]:
    """Strings the rules' patterns match (what the scripted table is biased toward)."""
    texts: list[str] = []

    def add(pattern: Pattern) -> None:
        if isinstance(pattern, WordsRule):
            texts.extend(pattern.words)
        elif isinstance(pattern, LiteralRule):
            texts.append(pattern.literal)
        else:
            found = dict(REGEXES + NARROW_REGEXES).get(pattern.pattern)
            texts.append(found if found is not None else "")

    for rule in rules:
        if isinstance(rule, WordsRule | LiteralRule | RegexRule):
            add(rule)
        elif isinstance(rule, AfterRule):
            add(rule.trigger)
            add(rule.forbid)
        elif isinstance(rule, AtMostRule):
            add(rule.pattern)
    return [text for text in texts if text]


def whole_word_rules(rules: Sequence[Rule]) -> frozenset[str]:
    """Ids of automaton rules with a whole-word pattern (confirmed by the next byte or END)."""
    found = set()

    def whole(pattern: Pattern) -> bool:
        if isinstance(pattern, RegexRule):
            return "\\b" in pattern.pattern
        return pattern.match.whole_word

    for rule in rules:
        parts: tuple[Pattern, ...] = ()
        if isinstance(rule, WordsRule | LiteralRule | RegexRule):
            parts = (rule,)
        elif isinstance(rule, AfterRule):
            parts = (rule.trigger, rule.forbid)
        elif isinstance(rule, AtMostRule):
            parts = (rule.pattern,)
        if any(whole(part) for part in parts):
            found.add(rule.id)
    return frozenset(found)


# -- scenarios ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Everything one differential run depends on.

    Attributes:
        rules: the drawn rules (without :data:`QUIET_RULES`).
        policy: the backtracking policy.
        narrow: the judge's text tokens are ``a`` and ``b`` only (every other id is never
            produced), so that bans can cover every allowed token (a stuck row).
        strategy: ``backtrack``, ``reset`` or ``mask``.
        temperature: 0 (greedy) or 1.
        top_p: the nucleus (None: off).
        prompts: three prompts of three tokens each.
        seeds: one sampling seed per row.
        prefill: forced response start ("" for none).
        table_seed: seed of the scripted bigram table.
        eos_level: how likely EOS is (0: almost never, 2: often).
    """

    rules: tuple[Rule, ...]
    policy: BacktrackPolicy
    narrow: bool
    strategy: str
    temperature: float
    top_p: float | None
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    prefill: str
    table_seed: int
    eos_level: int

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, top_p=self.top_p)

    @property
    def greedy(self) -> bool:
        return self.sampling.greedy


def draw_scenario(
    choose: Chooser,
    *,
    strategies: Sequence[str] = STRATEGIES,
    samplings: Sequence[tuple[float, float | None]] = SAMPLINGS,
    retries: Sequence[int] = RETRIES,
) -> Scenario | None:
    """A scenario, or None when the drawn spec cannot be used (its refusal text violates it, or
    its automaton is larger than the padded tables)."""
    narrow = chance(choose, 25)
    rules = draw_rules(choose, narrow)
    policy_fields = dict(
        checkpoint=choose.choice(CHECKPOINTS),
        # A narrow row is stuck when every one of its four tokens (a, b and the two EOS ids) is
        # banned at one position: that needs four retries and rewinds that stay at the position.
        max_rollback_tokens=choose.choice((1, 1, 1, 2, 4)) if narrow else choose.integer(1, 6),
        max_retries=max(retries) if narrow else choose.choice(tuple(retries)),
        max_discarded_tokens=choose.integer(4 if narrow else 1, 14),
        on_exhausted=choose.choice(("stop", "refuse")),
    )
    policy = None
    for refusal in REFUSALS:
        candidate = BacktrackPolicy(refusal=refusal, **policy_fields)  # type: ignore[arg-type]
        try:
            compiled = compile_rules(rules, candidate)
        except SpecError:
            continue
        policy = candidate
        break
    if policy is None or not fits(compiled):
        return None
    temperature, top_p = choose.choice(tuple(samplings))
    letters = "ab" if narrow else "tehnloc .qaz"
    prompts = tuple("zz" + choose.choice(letters) for _ in range(BATCH))
    seeds = tuple(choose.integer(0, 2**16) for _ in range(BATCH))
    return Scenario(
        rules=rules,
        policy=policy,
        narrow=narrow,
        # Only backtrack keeps bans, so only backtrack rows can be stuck: favour it when narrow.
        strategy=choose.choice((strategies[0], *strategies) if narrow else tuple(strategies)),
        temperature=temperature,
        top_p=top_p,
        prompts=prompts,
        seeds=seeds,
        prefill=choose.choice(NARROW_PREFILLS if narrow else PREFILLS)
        if chance(choose, 50)
        else "",
        # Hypothesis draws wide integers near 0 often: mixing the draw with the scenario keeps the
        # tables of different scenarios different (about 70 distinct seeds in 300 examples without).
        table_seed=zlib.crc32(repr((choose.integer(0, 2**20), rules, policy, prompts)).encode()),
        eos_level=choose.choice((1, 0, 2)),
    )


# -- judges ---------------------------------------------------------------------------------------


def compile_rules(rules: Sequence[Rule], policy: BacktrackPolicy) -> Shield:
    """``shield.compile`` of a spec with these rules and this policy."""
    return shield.compile(SimpleNamespace(name="differential", rules=tuple(rules), policy=policy))


def fits(compiled: Shield) -> bool:
    """Whether the lifted shield's tables fit the padded shape (:data:`COMPONENTS` x :data:`STATES`)."""
    components, states, _ = compiled.lift([b"a"]).byte_transitions.shape
    return components <= COMPONENTS and states <= STATES


def narrow_vocabulary() -> tuple[list[bytes], list[bool]]:
    """The tiny vocabulary with every token but ``a``, ``b`` and the specials made special."""
    pieces, flags = [], []
    for token, piece in enumerate(tokenizer().token_bytes):
        text = token - BYTE0 in NARROW_TEXT and len(piece) == 1
        pieces.append(piece if text else b"")
        flags.append(not text)
    return pieces, flags


def lift(compiled: Shield, narrow: bool) -> TokenShield:
    """The compiled shield lifted onto the tiny vocabulary (or its narrow restriction)."""
    if narrow:
        pieces, flags = narrow_vocabulary()
        return compiled.lift(pieces, special=flags)
    return compiled.lift(tokenizer().backend)


def pad_token_shield(tables: TokenShield, components: int, states: int) -> TokenShield:
    """The same shield with ``components`` components of ``states`` states.

    Added states loop on themselves and are never reached (no transition enters them); added
    components have one state that loops on every symbol and never violates. So every walk gives
    the same verdicts, and the monitor state is the original one followed by zeros.

    Raises:
        ValueError: the shield is larger than the padded shape.
    """
    c, s, k = tables.byte_transitions.shape
    if c > components or s > states:
        raise ValueError(f"cannot pad a [{c}, {s}] shield to [{components}, {states}]")
    transitions = np.tile(np.arange(states, dtype=np.int32)[None, :, None], (components, 1, k))
    transitions[:c, :s] = tables.byte_transitions
    transitions[c:] = 0
    violating = np.zeros((components, states), dtype=bool)
    violating[:c, :s] = tables.violating
    initial = np.zeros(components, dtype=np.int32)
    initial[:c] = tables.initial
    counts = np.ones(components, dtype=np.int32)
    counts[:c] = tables.state_counts
    return TokenShield(
        rule_ids=(*tables.rule_ids, *(f"pad{i}" for i in range(components - c))),
        byte_transitions=transitions,
        violating=violating,
        initial=initial,
        token_matrix=np.array(tables.token_matrix),
        token_lengths=np.array(tables.token_lengths),
        special=np.array(tables.special),
        token_bytes=tables.token_bytes,
        state_counts=counts,
    )


@dataclasses.dataclass
class Observed:
    """What a judge saw during one row's run (for the coverage counts).

    Attributes:
        end_failures: automaton rules that failed an END check (a match that END confirms).
        window_failures: response lengths at which a closed classifier window was unsafe.
    """

    end_failures: list[str] = dataclasses.field(default_factory=list)
    window_failures: list[int] = dataclasses.field(default_factory=list)


class ObservedJudge(Judge):
    """A judge that records what it saw in :attr:`observed` (the answers are the judge's own)."""

    def __init__(self, compiled: Shield, tables: TokenShield) -> None:
        super().__init__(compiled, tables)
        self.automaton_ids = frozenset(rule.rule_id for rule in compiled.compiled)
        self.observed = Observed()

    def take(self) -> Observed:
        """What was seen since the last call."""
        observed, self.observed = self.observed, Observed()
        return observed

    def end_failure(
        self, kept: Sequence[int], state: MonitorState, extra: Sequence[int]
    ) -> Failure | None:
        failure = super().end_failure(kept, state, extra)
        if failure is not None and failure.rule in self.automaton_ids:
            self.observed.end_failures.append(failure.rule)
        return failure

    def closed_window_failure(self, tokens: Sequence[int]) -> Failure | None:
        failure = super().closed_window_failure(tokens)
        if failure is not None:
            self.observed.window_failures.append(len(tokens))
        return failure


def judges(scenario: Scenario) -> tuple[Judge, ObservedJudge]:
    """The judge of the drawn rules alone, and the padded judge (quiet rules added, tables padded)
    that both decoders are run with."""
    plain_compiled = compile_rules(scenario.rules, scenario.policy)
    plain = Judge(plain_compiled, lift(plain_compiled, scenario.narrow))
    padded_compiled = compile_rules(scenario.rules + QUIET_RULES, scenario.policy)
    padded = pad_token_shield(lift(padded_compiled, scenario.narrow), COMPONENTS, STATES)
    return plain, ObservedJudge(padded_compiled, padded)


# -- the scripted table ---------------------------------------------------------------------------

#: Logits by rank in a row: clear margins between the first choices (greedy has no near-ties and
#: sampling still varies), then a long distinct tail.
_HEAD = (4.0, 3.0, 2.3, 1.8, 1.4, 1.0, 0.6, 0.2, -0.2, -0.6, -1.0, -1.4)


def ladder(vocab: int) -> np.ndarray:
    """``[V]`` logits by rank, decreasing, every two at least 0.01 apart."""
    tail = -3.0 - 0.01 * np.arange(vocab - len(_HEAD))
    return np.concatenate([np.asarray(_HEAD), tail])


def _ids(text: str) -> list[list[int]]:
    """The byte tokens of ``text`` and its tokenizer encoding (merges included)."""
    data = text.encode("utf-8")
    return [[BYTE0 + b for b in data], tokenizer().encode(text, add_bos=False)]


def desired_logits(scenario: Scenario) -> np.ndarray:
    """``[V, V]`` float64 logits after each token: a random bigram table biased toward the
    rules' texts (chains of their tokens), sentence ends, spaces and (per ``eos_level``) EOS."""
    vocab = model_config().vocab_size
    rng = np.random.default_rng(scenario.table_seed)
    priority = rng.random((vocab, vocab))
    texts = spec_texts(scenario.rules)
    if scenario.narrow:
        favourites = [BYTE0 + b for b in NARROW_TEXT]
    else:
        favourites = [BYTE0 + b for b in b" .qze"] + list(range(259, 264))
        favourites += [t for text in texts for ids in _ids(text) for t in ids]
    for token in dict.fromkeys(favourites):
        lucky = rng.random(vocab) < 0.5
        priority[lucky, token] += rng.uniform(0.5, 2.0, int(lucky.sum()))
    eos = EOS[rng.integers(len(EOS))]
    space = BYTE0 + ord(" ")
    for text in texts:
        for ids in _ids(text):
            for before, after in itertools.pairwise(ids):
                if rng.random() < 0.85:
                    priority[before, after] += rng.uniform(2.5, 4.0)
            starts = rng.random(vocab) < 0.3  # rows from which the text is likely to begin
            priority[starts, ids[0]] += rng.uniform(1.0, 3.0, int(starts.sum()))
            if rng.random() < 0.7:  # the text is likely to end the response (END confirms it)
                priority[ids[-1], eos] += rng.uniform(1.5, 3.5)
            if rng.random() < 0.5 and not scenario.narrow:  # or to end a word
                priority[ids[-1], space] += rng.uniform(1.0, 3.0)
    boost = {0: (0.0, 0.0), 1: (0.0, 2.3), 2: (1.0, 3.0)}[scenario.eos_level]
    priority[:, eos] += rng.uniform(*boost, vocab)
    logits = np.empty((vocab, vocab))
    values = ladder(vocab)
    for row in range(vocab):
        logits[row, np.argsort(-priority[row], kind="stable")] = values
    return logits


def bigram_table(scenario: Scenario) -> np.ndarray:
    """The scripted model's float32 table: ``c * table[t]`` is about :func:`desired_logits`."""
    return (desired_logits(scenario) / float(logit_scale())).astype(np.float32)


def device_logits(table: np.ndarray) -> np.ndarray:
    """``[V, V]`` float32: the logits the scripted model computes after each token, exactly
    (``c * table[t]``, one float32 product per entry)."""
    return logit_scale() * table


# -- the two decoders -----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("sampling",))
def _draw(
    logits: jax.Array,
    seed: jax.Array,
    position: jax.Array,
    attempt: jax.Array,
    sampling: SamplingConfig,
) -> jax.Array:
    keys = row_keys(seed[None], position[None], attempt[None])
    return sample(logits[None], keys, sampling)[0]


def device_sampler(
    sampling: SamplingConfig, seed: int, prompt_length: int
) -> Callable[[np.ndarray, np.ndarray, int, int], int]:
    """The reference's sampler that draws exactly as the device loop does: blocked tokens get
    ``-inf`` in float32 logits, and the key is ``row_keys(seed, cursor, attempt)`` with the cursor
    counted from the start of the prompt."""

    def sampler(logits: np.ndarray, blocked: np.ndarray, position: int, attempt: int) -> int:
        masked = np.where(blocked, np.float32(-np.inf), logits.astype(np.float32))
        token = _draw(
            jnp.asarray(masked, jnp.float32),
            jnp.asarray(seed, jnp.uint32),
            jnp.asarray(prompt_length + position, jnp.int32),
            jnp.asarray(attempt, jnp.int32),
            sampling,
        )
        return int(token)

    return sampler


def scripted(scenario: Scenario) -> tuple[Model, np.ndarray]:
    """The scenario's scripted model and the exact logits it computes after each token."""
    table = bigram_table(scenario)
    return scripted_model(model_config(), table), device_logits(table)


def run_device(
    scenario: Scenario, judge: Judge, model: Model, mesh: Any = None
) -> list[GenerationResult]:
    """``generate_shielded`` on the scenario's three prompts."""
    return generate_shielded(
        model,
        tokenizer(),
        list(scenario.prompts),
        judge=judge,
        strategy=scenario.strategy,
        max_new_tokens=MAX_NEW,
        temperature=scenario.temperature,
        top_p=scenario.top_p,
        seed=list(scenario.seeds),
        prefill=scenario.prefill or None,
        max_slots=SLOTS,
        mesh=mesh,
    )


def run_reference(
    scenario: Scenario, judge: Judge, logits: np.ndarray, row: int
) -> GenerationResult:
    """``reference_generate`` on one prompt, with the device's draws when sampling."""
    tok = tokenizer()
    prompt = tok.encode(scenario.prompts[row])
    seed = scenario.seeds[row]
    sampler = None if scenario.greedy else device_sampler(scenario.sampling, seed, len(prompt))
    return reference_generate(
        lambda prefix: logits[prefix[-1]],
        prompt,
        judge=judge,
        eos_id=EOS,  # type: ignore[arg-type]
        settings=ReferenceSettings(
            strategy=scenario.strategy,
            max_new_tokens=MAX_NEW,
            sampling=scenario.sampling,
            seed=seed,
        ),
        prefill=tok.encode(scenario.prefill, add_bos=False) if scenario.prefill else (),
        encode=lambda text: tok.encode(text, add_bos=False),
        sampler=sampler,
    )


def comparable(result: GenerationResult) -> GenerationResult:
    """The result without its wall time (the one field the two decoders may not share)."""
    return dataclasses.replace(result, stats=dataclasses.replace(result.stats, wall_seconds=0.0))


# -- what a run covered ---------------------------------------------------------------------------

#: The scenarios the differential property must reach (see test_differential_covers_its_scenarios).
SCENARIOS = (
    "row_rolls_back",
    "row_without_rollback",
    "batch_mixes_both",
    "retried_at_one_position",
    "stuck",
    "exhausted_under_backtrack",
    "refused",
    "budget_stop",
    "prefill_rolled_back",
    "end_confirmed_whole_word",
    "last_token_closes_unsafe_window",
    "non_ascii_rollback",
    "classifier_sentence_rollback",
    "classifier_window_rollback",
    "classifier_response_rollback",
    "mask_reports_violation",
    "reset_rollback",
    "greedy_rollback",
    "sampled",
    "nucleus_rollback",
)


def covered(
    scenario: Scenario, results: Sequence[GenerationResult], observed: Sequence[Observed]
) -> Counter[str]:
    """How often each of :data:`SCENARIOS` happened in one run (per row; ``sampled`` per run).

    Args:
        scenario: the scenario.
        results: the reference results, one per row.
        observed: per row, what the judge saw during the reference run.
    """
    counts: Counter[str] = Counter()
    scopes = {rule.id: rule.scope for rule in scenario.rules if isinstance(rule, ClassifierRule)}
    whole = whole_word_rules(scenario.rules)
    non_ascii = {
        rule.id for rule in scenario.rules if any(not text.isascii() for text in spec_texts([rule]))
    }
    forced = len(tokenizer().encode(scenario.prefill, add_bos=False)) if scenario.prefill else 0
    limit = forced + MAX_NEW
    for result, seen in zip(results, observed, strict=True):
        rollbacks = [e for e in result.events if e.kind == "rollback"]
        counts["row_rolls_back" if rollbacks else "row_without_rollback"] += 1
        targets = Counter(e.to_token for e in rollbacks)
        counts["retried_at_one_position"] += scenario.strategy == "backtrack" and any(
            n >= 2 for n in targets.values()
        )
        counts["stuck"] += any(e.rule == "no-allowed-token" for e in result.events)
        counts["exhausted_under_backtrack"] += scenario.strategy == "backtrack" and any(
            e.kind == "exhausted" for e in result.events
        )
        counts["refused"] += result.finish_reason == "refused"
        counts["budget_stop"] += result.finish_reason == "budget"
        counts["prefill_rolled_back"] += any(e.to_token < forced for e in rollbacks)
        counts["end_confirmed_whole_word"] += any(rule in whole for rule in seen.end_failures)
        # The token that fills the response also closes an unsafe classifier window.
        counts["last_token_closes_unsafe_window"] += limit in seen.window_failures
        counts["non_ascii_rollback"] += any(e.rule in non_ascii for e in rollbacks)
        for event in rollbacks:
            if event.rule in scopes:
                counts[f"classifier_{scopes[event.rule]}_rollback"] += 1
        counts["mask_reports_violation"] += any(e.kind == "violation" for e in result.events)
        counts["reset_rollback"] += scenario.strategy == "reset" and bool(rollbacks)
    counts["batch_mixes_both"] += bool(counts["row_rolls_back"] and counts["row_without_rollback"])
    counts["greedy_rollback"] += scenario.greedy and bool(counts["row_rolls_back"])
    counts["sampled"] += not scenario.greedy
    counts["nucleus_rollback"] += scenario.top_p is not None and bool(counts["row_rolls_back"])
    return +counts


def disagreement(device: GenerationResult, reference: GenerationResult) -> str:
    """The fields on which two results differ, events one per line."""
    lines = []
    for field in ("text", "finish_reason", "tokens", "stats"):
        if getattr(device, field) != getattr(reference, field):
            lines.append(f"{field}: device {getattr(device, field)!r}")
            lines.append(f"{' ' * len(field)}  reference {getattr(reference, field)!r}")
    for name, result in (("device", device), ("reference", reference)):
        lines.append(f"{name} events:")
        lines.extend(
            f"  {e.kind} {e.rule} {e.from_token}->{e.to_token} {e.detail}".rstrip()
            for e in result.events
        )
    return "\n".join(lines)


def compare_scenario(scenario: Scenario, mesh: Any = None) -> Counter[str]:
    """Run the scenario on the device and on the reference machine; assert that every row agrees
    (tokens, text, finish reason, events, stats but wall time) and that the paddings are neutral.

    Returns:
        What the run covered (:func:`covered`).
    """
    plain, judge = judges(scenario)
    model, logits = scripted(scenario)
    device = run_device(scenario, judge, model, mesh)
    assert len(device) == BATCH
    expected, observed = [], []
    for row in range(BATCH):
        judge.take()
        reference = run_reference(scenario, judge, logits, row)
        observed.append(judge.take())
        expected.append(reference)
        got, want = comparable(device[row]), comparable(reference)
        assert got == want, f"row {row}: the device decoder and the reference disagree\n" + (
            disagreement(got, want)
        )
        unpadded = run_reference(scenario, plain, logits, row)
        assert comparable(unpadded) == comparable(reference), (
            f"row {row}: padding the tables or adding quiet classifier rules changed the reference"
        )
    return covered(scenario, expected, observed)


def reachable_states(tables: TokenShield, walks: Sequence[bytes]) -> list[MonitorState]:
    """The monitor states after each byte string of ``walks`` (read from the initial state)."""
    states = []
    for data in walks:
        state = np.array(tables.initial, dtype=np.int32)
        for byte in data:
            state = tables.byte_transitions[np.arange(len(state)), state, byte]
        states.append(tuple(int(s) for s in state))
    return states


def reference_coverage(scenario: Scenario) -> Counter[str]:
    """What a scenario covers, from the reference decoder alone (no device run)."""
    _, judge = judges(scenario)
    logits = device_logits(bigram_table(scenario))
    results, observed = [], []
    for row in range(BATCH):
        judge.take()
        results.append(run_reference(scenario, judge, logits, row))
        observed.append(judge.take())
    return covered(scenario, results, observed)


def covering_seeds(candidates: Sequence[int], size: int = 10) -> list[int]:
    """``size`` seeds of the generator whose scenarios together reach every one of
    :data:`SCENARIOS` (greedy set cover, then the seeds that reach the most), for the coverage
    test's fixed list: run ``python -m tests.decoders.differential_support`` after changing the
    generator.

    Raises:
        ValueError: the candidates never reach some scenario.
    """
    reached = {}
    for seed in candidates:
        scenario = draw_scenario(RandomChooser(seed))
        if scenario is not None:
            reached[seed] = set(reference_coverage(scenario))
    left, chosen = set(SCENARIOS), []
    while left:
        best = max(reached, key=lambda seed: len(reached[seed] & left))
        if not reached[best] & left:
            raise ValueError(f"no candidate seed reaches {sorted(left)}")
        chosen.append(best)
        left -= reached[best]
    rest = sorted(set(reached) - set(chosen), key=lambda seed: -len(reached[seed]))
    return chosen + rest[: max(0, size - len(chosen))]


if __name__ == "__main__":
    print(covering_seeds(range(600)))
