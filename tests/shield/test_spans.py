"""Full spans in a scan: leftmost-longest matches, differential against Python ``re``.

``re`` is leftmost-first; the reference here takes ``re.search``'s start and the longest end at
which ``re`` can match from that start (a look-ahead pins the end), which is the POSIX rule the
scan implements. Regression tests carry the name of the bug of issue 15: spans that ended where
the automaton first accepted (``john.doe@example.co``, ``+1 415``).
"""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

import shield
import specs
from shield.automata.compiler import compile_rule
from shield.automata.limits import DEFAULT_LIMITS
from shield.monitor import Shield
from shield.policy import BacktrackPolicy
from shield.rules import AfterRule, AtMostRule, LiteralRule, MatchOptions, RegexRule, WordsRule
from tests.shield.helpers import python_pattern

ALPHABET = "ab c1.é\n"


def _shield(*rules: shield.Rule) -> Shield:
    """A shield built without the refusal check (random patterns may match any refusal)."""
    compiled = tuple(compile_rule(rule, DEFAULT_LIMITS) for rule in rules)  # type: ignore[arg-type]
    return Shield("t", tuple(rules), compiled, BacktrackPolicy())


def _spans(guard: Shield, text: str, **options: bool) -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in guard.scan(text, **options)]


def _reference(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    """Leftmost start as ``re.search`` finds it, longest end as ``re`` can match it."""
    spans: list[tuple[int, int]] = []
    position = 0
    while position <= len(text):
        found = pattern.search(text, position)
        if found is None:
            break
        start = found.start()
        end = max(
            e
            for e in range(start, len(text) + 1)
            if re.compile(
                f"(?:{pattern.pattern})(?={re.escape(text[e:])}\\Z)", pattern.flags
            ).match(text, start)
        )
        spans.append((start, end))
        position = end if end > start else start + 1
    return spans


# -- random regexes of the subset, each with its shortest match length ------------------------
_ATOMS = st.sampled_from(
    [
        *[("a", 1), ("b", 1), ("c", 1), (" ", 1), (r"\.", 1), ("é", 1), ("[ab]", 1), ("[^a]", 1)],
        *[(".", 1), (r"\d", 1), (r"\w", 1), (r"\s", 1), (r"\W", 1)],
        *[(r"\b", 0), (r"\B", 0), ("^", 0), ("$", 0)],
    ]
)
_QUANTIFIERS = st.sampled_from(
    [("*", 0), ("+", 1), ("?", 0), ("{2}", 2), ("{1,3}", 1), ("{0,2}", 0), ("{2,}", 2)]
)


def _extend(children: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy[tuple[str, int]]:
    group = st.sampled_from(["(", "(?:"])
    concat = st.lists(children, min_size=2, max_size=3).map(
        lambda items: ("".join(p for p, _ in items), sum(n for _, n in items))
    )
    alternation = st.tuples(group, st.lists(children, min_size=2, max_size=3)).map(
        lambda g: (g[0] + "|".join(p for p, _ in g[1]) + ")", min(n for _, n in g[1]))
    )
    nonempty = children.filter(lambda item: item[1] >= 1)  # "nothing to repeat" otherwise
    repeated = st.tuples(group, nonempty, _QUANTIFIERS, st.booleans()).map(
        lambda r: (f"{r[0]}{r[1][0]}){r[2][0]}{'?' if r[3] else ''}", r[1][1] * r[2][1])
    )
    return concat | alternation | repeated


REGEXES = st.recursive(_ATOMS, _extend, max_leaves=6).filter(lambda item: item[1] >= 1)


@given(regex=REGEXES, text=st.text(alphabet=ALPHABET, max_size=12))
@settings(max_examples=150, deadline=None)
def test_scan_spans_equal_re_leftmost_longest(regex: tuple[str, int], text: str) -> None:
    pattern, _ = regex
    guard = _shield(RegexRule(id="r", pattern=pattern))
    expected = _reference(python_pattern(pattern), text)
    assert (guard.first_violation(text.encode(), final=True) is None) == (not expected)
    assert _spans(guard, text) == expected


@given(regex=REGEXES, text=st.text(alphabet="ab 1.", max_size=12))
@settings(max_examples=60, deadline=None)
def test_whole_word_spans_equal_re(regex: tuple[str, int], text: str) -> None:
    pattern, _ = regex
    rule = RegexRule(id="r", pattern=pattern, match=MatchOptions(whole_word=True))
    expected = _reference(python_pattern(pattern, whole_word=True), text)
    assert _spans(_shield(rule), text) == expected


def test_alternation_takes_the_longest_not_the_first_alternative() -> None:
    guard = _shield(RegexRule(id="r", pattern="a|ab"))
    assert re.search("a|ab", "xab") is not None and re.search("a|ab", "xab").group() == "a"  # type: ignore[union-attr]
    assert _spans(guard, "xab") == [(1, 3)]


def test_a_later_detected_match_can_start_further_left() -> None:
    guard = _shield(RegexRule(id="r", pattern="abcd|c"))
    detected = guard.first_violation(b"abcd", final=True)
    assert detected is not None and (detected.start, detected.end) == (2, 3)  # decoding: earliest
    assert _spans(guard, "abcd") == [(0, 4)]  # scan: leftmost, then longest


def test_issue_15_email_span_was_cut_at_example_co() -> None:
    guard = specs.shield_for(specs.load_library("pii"))
    text = "mail me at john.doe@example.com or call +1 415 555 0100"
    detected = guard.first_violation(text.encode(), final=True)
    assert detected is not None and detected.match == "john.doe@example.co"  # the decoder's
    found = {(v.rule, v.match) for v in guard.scan(text)}
    assert ("email", "john.doe@example.com") in found


def test_issue_15_phone_span_was_cut_at_plus_1_415() -> None:
    guard = specs.shield_for(specs.load_library("pii"))
    found = [(v.rule, v.match) for v in guard.scan("call +1 415 555 0100 now")]
    assert found == [
        ("phone-international", "+1 415 555 0100"),
        ("phone-us", "+1 415 555 0100"),
    ]


def test_spans_are_in_the_original_text_through_normalisations() -> None:
    rule = WordsRule(
        id="w",
        words=("shit",),
        match=MatchOptions(case_insensitive=True, normalize=frozenset({"separators", "repeats"})),
    )
    text = "é oh s.h.i.t and SHIIIT!"
    found = [(v.start, v.end, v.match) for v in _shield(rule).scan(text)]
    assert found == [(5, 12, "s.h.i.t"), (17, 23, "SHIIIT")]


def test_after_counts_matches_after_the_trigger() -> None:
    rule = AfterRule(
        id="card",
        trigger=LiteralRule(id="card", literal="card"),
        forbid=RegexRule(id="card", pattern="[0-9]+"),
    )
    guard = _shield(rule)
    text = "12 then card 3456 and 78"
    assert guard.first_violation(text.encode(), final=True) is not None
    assert [v.match for v in guard.scan(text)] == ["3456", "78"]
    assert guard.scan("12 then card") == []


def test_at_most_reports_the_matches_beyond_the_count_in_full() -> None:
    rule = AtMostRule(id="two", pattern=RegexRule(id="two", pattern="a+"), count=2)
    guard = _shield(rule)
    # The decoder counts a+ at its earliest detection: 'a', 'a', then the third 'a' violates.
    detected = guard.first_violation(b"aaaa", final=True)
    assert detected is not None and detected.end == 3
    assert [(v.start, v.end) for v in guard.scan("aaaa")] == [(2, 4)]
    assert guard.scan("aa") == [] and guard.first_violation(b"aa", final=True) is None
    assert [v.match for v in guard.scan("a b a b aa")] == ["aa"]


@given(
    kind=st.sampled_from(["after", "at_most"]),
    regex=REGEXES,
    text=st.text(alphabet=ALPHABET, max_size=12),
)
@settings(max_examples=80, deadline=None)
def test_scan_reports_iff_the_decoder_is_violated(
    kind: str, regex: tuple[str, int], text: str
) -> None:
    pattern = RegexRule(id="x", pattern=regex[0])
    rule: shield.Rule
    if kind == "after":
        rule = AfterRule(id="x", trigger=LiteralRule(id="x", literal="b"), forbid=pattern)
    else:
        rule = AtMostRule(id="x", pattern=pattern, count=1)
    guard = _shield(rule)
    found = guard.scan(text)
    assert (guard.first_violation(text.encode(), final=True) is None) == (not found)
    py = python_pattern(regex[0])
    for earlier, later in itertools.pairwise(found):
        assert earlier.end <= later.start
    for v in found:  # each reported span is a match of the pattern in its context
        assert re.compile(f"(?:{py.pattern})(?={re.escape(text[v.end :])}\\Z)", re.ASCII).match(
            text, v.start
        )


def test_max_length_reports_the_bytes_after_the_limit() -> None:
    guard = _shield(shield.MaxLengthRule(id="len", max_bytes=3))
    assert [(v.start, v.end) for v in guard.scan("abcdef")] == [(3, 6)]


def test_empty_rules_report_nothing_on_clean_text() -> None:
    guard = _shield(RegexRule(id="r", pattern="zz+"))
    assert guard.scan("a clean text") == []


@given(
    words=st.lists(st.text(alphabet="abe", min_size=1, max_size=3), min_size=1, max_size=3),
    normalize=st.frozensets(st.sampled_from(["leet", "repeats", "separators"])),
    whole_word=st.booleans(),
    text=st.text(alphabet="abeAB3 .", max_size=14),
)
@settings(max_examples=60, deadline=None)
def test_word_list_scan_reports_iff_the_decoder_is_violated(
    words: list[str], normalize: frozenset[str], whole_word: bool, text: str
) -> None:
    match = MatchOptions(case_insensitive=True, whole_word=whole_word, normalize=normalize)
    guard = _shield(WordsRule(id="w", words=tuple(words), match=match))
    found = guard.scan(text)
    assert (guard.first_violation(text.encode(), final=True) is None) == (not found)
    for earlier, later in itertools.pairwise(found):
        assert earlier.end <= later.start
    for v in found:  # a reported span, on its own, is a violation
        assert guard.first_violation(v.match.encode(), final=True) is not None
