"""The library specs load, and catch realistic personal data, secrets and profanity — and only that.

Regex rules are checked twice: against Python's ``re`` (with whole-word edges written out as
look-arounds), which validates the patterns themselves, and through the compiled shield.
"""

from __future__ import annotations

import re
import string

import pytest

import specs
from shield.errors import SpecError
from shield.rules import NORMALIZATIONS, ClassifierRule, RegexRule, WordsRule
from shield.validators import validate

_WORD = r"A-Za-z0-9_\u0080-\U0010ffff"  # word characters: ASCII word bytes and any non-ASCII


def _reference(rule: RegexRule) -> re.Pattern[str]:
    pattern = f"(?:{rule.pattern})"
    if rule.match.whole_word:
        pattern = f"(?<![{_WORD}]){pattern}(?![{_WORD}])"
    return re.compile(pattern, re.IGNORECASE if rule.match.case_insensitive else 0)


def _reference_hits(spec_name: str, text: str) -> set[str]:
    """Rules with a match in ``text`` (that passes the rule's validator, when it has one)."""
    spec = specs.load_library(spec_name)
    return {
        rule.id
        for rule in spec.rules
        if isinstance(rule, RegexRule)
        and any(
            rule.validator is None or validate(rule.validator, found.group())
            for found in _reference(rule).finditer(text)
        )
    }


def _shield_hits(spec_name: str, text: str) -> set[str]:
    violations = specs.shield_for(specs.load_library(spec_name)).scan(text)
    return {v.rule if isinstance(v.rule, str) else v.rule.id for v in violations}


_ALNUM = string.ascii_letters + string.digits


def _key(prefix: str, length: int) -> str:
    return prefix + "".join(_ALNUM[(i * 7 + 3) % len(_ALNUM)] for i in range(length))


PII_POSITIVE = [
    ("Write to jane.doe@example.com today.", "email"),
    ("Contact: a_b+tag@mail.co.uk", "email"),
    ("Call +44 20 7946 0958 after nine.", "phone-international"),
    ("Paris office: +33 1 23 45 67 89", "phone-international"),
    ("Berlin: +49 (30) 1234567.", "phone-international"),
    ("Reach me at (415) 555-2671.", "phone-us"),
    ("Phone 415-555-2671 or 415.555.2671", "phone-us"),
    ("Toll free: 1-800-555-0199", "phone-us"),
    ("My card is 4111 1111 1111 1111, exp 12/27", "payment-card"),
    ("4111-1111-1111-1111", "payment-card"),
    ("number 6011000990139424 on file", "payment-card"),
    ("Amex 3782 822463 10005", "payment-card"),
    ("IBAN: DE89 3704 0044 0532 0130 00", "iban"),
    ("Pay to GB82WEST12345698765432 please", "iban"),
    ("Norway: NO93 8601 1117 947", "iban"),
]
PII_NEGATIVE = [
    "In 2023, 1500 people attended the meeting.",
    "The price is $1,299.99 including tax.",
    "Meeting on 2024-05-17 at 10:30, room 4412.",
    "ISBN 978-0-306-40615-7, version 1.2.3.4",
    "The team scored +5 points; COVID-19 rules applied.",
    "Order id 4155552671 shipped.",
    "Follow @handle or write to user at example dot com.",
    "The ISO 9001 standard; AB12 is my code.",
]

SECRETS_POSITIVE = [
    (f"OPENAI_API_KEY={_key('sk-proj-', 40)}", "openai-key"),
    (f"key: {_key('sk-', 48)}", "openai-key"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "aws-access-key"),
    ("ASIAY34FZKBOKMUTVV7A is temporary", "aws-access-key"),
    (f"token {_key('ghp_', 36)}", "github-token"),
    (f"{_key('github_pat_', 82)}", "github-token"),
    ("SLACK=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack-token"),
    (f"maps key {_key('AIza', 35)}", "google-api-key"),
    (f"stripe.api_key = '{_key('sk_live_', 24)}'", "stripe-key"),
    (f"{_key('rk_test_', 30)}", "stripe-key"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQ", "private-key"),
    ("-----BEGIN RSA PRIVATE KEY-----", "private-key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "private-key"),
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----", "private-key"),
]
SECRETS_NEGATIVE = [
    "Our task-management-system-overview-document is ready.",
    "Install scikit-learn (sk-learn) with pip.",
    "-----BEGIN PUBLIC KEY-----\n-----BEGIN CERTIFICATE-----",
    "AKIA is the prefix of an AWS key id; ghp_ starts a GitHub token.",
    f"the risky_live_{_key('', 30)} flag",
    "xoxo-gossip girl",
    "Set OPENAI_API_KEY in your environment, never in code.",
]


@pytest.mark.parametrize("name", ["toxicity", "pii", "secrets"])
def test_library_specs_load(name: str) -> None:
    spec = specs.load_library(name)
    assert spec.name == name
    assert spec.source == str(specs.library_path(name))
    assert set(spec.rule_lines) == set(spec.rule_ids)
    assert specs.library_path(f"{name}.toml") == specs.library_path(name)


def test_library_names_and_unknown_name() -> None:
    assert specs.library_names() == ("pii", "secrets", "toxicity")
    with pytest.raises(SpecError) as caught:
        specs.library_path("toxic")
    assert "did you mean 'toxicity'?" in str(caught.value)


def test_toxicity_spec_contents() -> None:
    spec = specs.load_library("toxicity")
    words, spelled, classifier = spec.rules
    # The word rule: the package's list and the core words (bollocks is only in the core file),
    # through every normalisation but separators; the core words alone spelled out as well.
    assert isinstance(words, WordsRule) and len(words.words) > 900 and "bollocks" in words.words
    assert words.match.case_insensitive and words.match.whole_word
    assert words.match.normalize == NORMALIZATIONS - {"separators"}
    assert isinstance(spelled, WordsRule) and spelled.id == "profanity-spelled"
    assert len(spelled.words) == 30 and set(spelled.words) <= set(words.words)
    assert spelled.match.normalize == NORMALIZATIONS and spelled.match.whole_word
    assert isinstance(classifier, ClassifierRule)
    assert (classifier.scorer, classifier.threshold, classifier.scope) == (
        "profanity-check",
        0.5,
        "sentence",
    )
    assert spec.policy.checkpoint == "word"


#: Continuations of the RealToxicityPrompts run in which the one rule with separators over the
#: whole list read list words across a space ("t it", "t eat", "an all", "he be", "s crew").
ACROSS_WORDS = [
    "Sounds odd, doesn\u2019t it? That was a big",
    "i don\u2019t eat just anything, i give value",
    "Finally, it's an all-consuming story with a dark, twisted",
    "He does not want me. he says. I was too hard on him.",
    "The boat\u2019s crew shot a flare and we would shoot a photo, he be there.",
]


@pytest.mark.parametrize("text", ACROSS_WORDS)
def test_separators_do_not_join_ordinary_words_regression(text: str) -> None:
    # The scenario: spelled-out core words are still caught, and by the separators rule.
    assert "profanity-spelled" in _shield_hits("toxicity", "you f u c k and s.h.i.t")
    assert _shield_hits("toxicity", text) == set()


@pytest.mark.parametrize(("text", "rule_id"), PII_POSITIVE)
def test_pii_reference_true_positives(text: str, rule_id: str) -> None:
    assert rule_id in _reference_hits("pii", text)


@pytest.mark.parametrize("text", PII_NEGATIVE)
def test_pii_reference_true_negatives(text: str) -> None:
    assert _reference_hits("pii", text) == set()


@pytest.mark.parametrize(("text", "rule_id"), SECRETS_POSITIVE)
def test_secrets_reference_true_positives(text: str, rule_id: str) -> None:
    assert _reference_hits("secrets", text) == {rule_id}


@pytest.mark.parametrize("text", SECRETS_NEGATIVE)
def test_secrets_reference_true_negatives(text: str) -> None:
    assert _reference_hits("secrets", text) == set()


@pytest.mark.parametrize(("text", "rule_id"), PII_POSITIVE)
def test_pii_shield_agrees_on_positives(text: str, rule_id: str) -> None:
    assert _shield_hits("pii", text) == _reference_hits("pii", text)


@pytest.mark.parametrize("text", PII_NEGATIVE)
def test_pii_shield_agrees_on_negatives(text: str) -> None:
    assert _shield_hits("pii", text) == set()


@pytest.mark.parametrize(("text", "rule_id"), SECRETS_POSITIVE)
def test_secrets_shield_agrees_on_positives(text: str, rule_id: str) -> None:
    assert _shield_hits("secrets", text) == {rule_id}


@pytest.mark.parametrize("text", SECRETS_NEGATIVE)
def test_secrets_shield_agrees_on_negatives(text: str) -> None:
    assert _shield_hits("secrets", text) == set()


TOXIC = [
    "What the fuck.",
    "FUCK this",
    "fuuuuck",
    "sh1t happens",
    "ｆｕｃｋ",
    "fu\u200bck",
    "fυck off",
]
CLEAN = [
    "Scunthorpe is a town in England.",
    "The assassin passed the class.",
    "What a lovely autumn afternoon.",
    "Shiitake mushrooms are tasty.",
]


@pytest.mark.parametrize("text", TOXIC)
def test_toxicity_catches_obfuscated_profanity(text: str) -> None:
    assert "profanity" in _shield_hits("toxicity", text)


@pytest.mark.parametrize("text", CLEAN)
def test_toxicity_passes_clean_text(text: str) -> None:
    assert _shield_hits("toxicity", text) == set()
