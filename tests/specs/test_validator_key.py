"""The ``validator`` key: loaded onto forbid rules, refused elsewhere and when unknown, rendered back."""

from __future__ import annotations

import pytest

import specs
from shield.errors import SpecError, SpecSyntaxError
from shield.rules import RegexRule
from tests.specs.helpers import assert_located

SOURCE = "s.toml"
CARD = "forbid.regex = '[0-9]{4}( ?[0-9]{4}){3}'"


def fail(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        specs.parse(text, source=SOURCE)
    return caught.value


def rule(body: str) -> str:
    """A spec whose one rule has id ``r`` on line 4 and ``body`` from line 5 on."""
    return f'[spec]\nname = "demo"\n[[rule]]\nid = "r"\n{body}\n'


def test_a_forbid_rule_takes_a_validator() -> None:
    spec = specs.parse(rule(f'{CARD}\nvalidator = "luhn"'))
    (card,) = spec.rules
    assert isinstance(card, RegexRule) and card.validator == "luhn"
    assert specs.parse(specs.render(spec)) == spec
    assert 'validator = "luhn"' in specs.render(spec)


def test_an_unknown_validator_is_refused_with_the_valid_names() -> None:
    error = fail(rule(f'{CARD}\nvalidator = "lunh"'))
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=6,
        rule_id="r",
        says=("validator must be one of 'luhn', 'iban', 'phone'", "did you mean 'luhn'?"),
    )
    error = fail(rule(f"{CARD}\nvalidator = 3"))
    assert_located(error, kind=SpecSyntaxError, file=SOURCE, line=6, rule_id="r", says=("3",))


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (f'at_most = 2\n{CARD}\nvalidator = "luhn"', "at_most"),
        (f'after.literal = "card"\n{CARD}\nvalidator = "luhn"', "after"),
        ('max_length = { bytes = 10 }\nvalidator = "luhn"', "max_length"),
        ('classifier = { name = "profanity-check", threshold = 0.8 }\nvalidator = "luhn"', "classifier"),
    ],
)  # fmt: skip
def test_validator_is_refused_outside_plain_forbid_rules(body: str, kind: str) -> None:
    error = fail(rule(body))
    line = 5 + body.count("\n")
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=line,
        rule_id="r",
        says=("validator applies to plain forbid rules only", f"this rule has {kind}"),
    )


def test_the_library_pii_spec_validates_numbers() -> None:
    validators = {r.id: getattr(r, "validator", None) for r in specs.load_library("pii").rules}
    assert validators == {
        "email": None,
        "phone-international": "phone",
        "phone-us": "phone",
        "payment-card": "luhn",
        "iban": "iban",
    }
