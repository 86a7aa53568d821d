"""Validators: Luhn, IBAN mod-97 and libphonenumber on whole matches, and what a scan does with them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shield
from shield.automata.compiler import compile_rule
from shield.automata.limits import DEFAULT_LIMITS
from shield.monitor import Shield
from shield.policy import BacktrackPolicy
from shield.rules import VALIDATORS, AfterRule, AtMostRule, LiteralRule, RegexRule
from shield.validators import VALIDATOR_FUNCTIONS, iban, luhn, phone, validate


def _check_digit(payload: str) -> str:
    """The Luhn check digit that makes ``payload + digit`` valid (computed independently)."""
    for digit in "0123456789":
        number = payload + digit
        total = sum(
            sum(divmod(int(d) * (2 if i % 2 else 1), 10)) for i, d in enumerate(reversed(number))
        )
        if total % 10 == 0:
            return digit
    raise AssertionError("unreachable: one digit always completes the Luhn sum")


def _iban(country: str, bban: str) -> str:
    """An IBAN with its check digits computed the ISO 13616 way."""
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - numeric % 97:02d}{bban}"


def test_the_validator_names_are_the_vocabulary_s() -> None:
    assert tuple(VALIDATOR_FUNCTIONS) == VALIDATORS == ("luhn", "iban", "phone")


@given(payload=st.text(alphabet="0123456789", min_size=11, max_size=18))
@settings(max_examples=100)
def test_luhn_accepts_exactly_the_right_check_digit(payload: str) -> None:
    right = _check_digit(payload)
    assert luhn(payload + right)
    for wrong in set("0123456789") - {right}:
        assert not luhn(payload + wrong)


@given(payload=st.text(alphabet="0123456789", min_size=15, max_size=15), data=st.data())
@settings(max_examples=60)
def test_luhn_ignores_separators_and_catches_one_changed_digit(
    payload: str, data: st.DataObject
) -> None:
    number = payload + _check_digit(payload)
    grouped = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    assert luhn(grouped) and luhn(grouped.replace(" ", "-"))
    index = data.draw(st.integers(0, 15))
    changed = str((int(number[index]) + data.draw(st.integers(1, 9))) % 10)
    assert not luhn(number[:index] + changed + number[index + 1 :])


def test_luhn_known_numbers_and_lengths() -> None:
    assert luhn("4111 1111 1111 1111") and luhn("5555555555554444") and luhn("378282246310005")
    assert not luhn("4111 1111 1111 1112")
    assert not luhn("00000000000") and not luhn("0" * 20)  # 11 and 20 digits: not a card


@given(
    country=st.sampled_from(["DE", "GB", "FR", "NL", "ES", "IT", "CH"]),
    bban=st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=12, max_size=26),
)
@settings(max_examples=100)
def test_iban_accepts_computed_check_digits_and_rejects_others(country: str, bban: str) -> None:
    good = _iban(country, bban)
    assert iban(good)
    assert iban(" ".join(good[i : i + 4] for i in range(0, len(good), 4)))
    wrong = f"{(int(good[2:4]) + 1) % 100:02d}"
    assert not iban(good[:2] + wrong + good[4:])


def test_iban_known_numbers_and_forms() -> None:
    assert iban("GB82 WEST 1234 5698 7654 32") and iban("DE89370400440532013000")
    assert not iban("GB83 WEST 1234 5698 7654 32")
    assert not iban("GB82 WEST 12") and not iban("1282WEST12345698765432")


def test_phone_uses_libphonenumber() -> None:
    assert phone("+44 20 7946 0958") and phone("+1 415 555 0100") and phone("(415) 555-2671")
    assert phone("+33 1 23 45 67 89") and phone("+49 30 1234567")
    assert not phone("+1 123 456 7890")  # no North American area code starts with 1
    assert not phone("+999 1234 5678") and not phone("+1 415")


def test_validate_refuses_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown validator 'lunh'; expected one of luhn"):
        validate("lunh", "4111111111111111")


def test_rules_refuse_unknown_validators_and_validated_parts() -> None:
    with pytest.raises(shield.SpecSyntaxError, match="unknown validator 'crc'") as info:
        RegexRule(id="r", pattern="[0-9]+", validator="crc")
    assert info.value.rule_id == "r"
    card = RegexRule(id="c", pattern="[0-9]+", validator="luhn")
    with pytest.raises(shield.SpecSyntaxError, match="forbid rules only"):
        AtMostRule(id="c", pattern=card, count=2)
    with pytest.raises(shield.SpecSyntaxError, match="forbid rules only"):
        AfterRule(id="c", trigger=LiteralRule(id="c", literal="card"), forbid=card)


def _card_shield() -> Shield:
    rule = RegexRule(id="card", pattern=r"\d{4}( ?\d{4}){3}", validator="luhn")
    return Shield("t", (rule,), (compile_rule(rule, DEFAULT_LIMITS),), BacktrackPolicy())


def test_scan_drops_matches_whose_full_span_fails_the_validator() -> None:
    guard = _card_shield()
    text = "pay 4111 1111 1111 1111, not 4111 1111 1111 1112"
    assert [v.match for v in guard.scan(text)] == ["4111 1111 1111 1111"]
    assert [v.match for v in guard.scan(text, validators=False)] == [
        "4111 1111 1111 1111",
        "4111 1111 1111 1112",
    ]


def test_decoding_stays_conservative_with_a_validator() -> None:
    guard = _card_shield()
    invalid = b"order 4111 1111 1111 1112"
    assert guard.scan(invalid.decode()) == []  # the scan knows the whole number fails Luhn
    found = guard.first_violation(invalid, final=True)
    assert found is not None and found.rule == "card"  # the decoder still rolls it back
    state, verdict = guard.step(guard.init(), b"4111 1111 1111 111")
    assert verdict.ok  # 15 digits: no match yet
    _, verdict = guard.step(state, b"2")
    assert not verdict.ok  # flagged when the pattern matches, before any check could run
