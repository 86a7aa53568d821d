"""Validators: checks that decide, on a whole match, whether it really is a card, an IBAN, a phone.

A regex can say that a run of digits looks like a card number; only the Luhn checksum says that it
could be one. A rule with ``validator = NAME`` (one of :data:`shield.rules.VALIDATORS`) keeps the
automaton it always had, and a scan (:meth:`shield.monitor.Shield.scan`) drops every match whose
full span fails the validator. Decoding does not consult validators: the automaton detects a match
at its earliest byte, before the whole number is there, so the decoder treats every match as a
violation (conservative; a validator only removes false positives where the full span is known).

Each validator is a pure function of the matched text:

- ``luhn``: the ASCII digits of the match (separators ignored) pass the Luhn checksum (ISO/IEC
  7812-1), and there are :data:`MIN_CARD_DIGITS` to :data:`MAX_CARD_DIGITS` of them;
- ``iban``: without spaces, two letters, two check digits and :data:`MIN_IBAN_CHARS` to
  :data:`MAX_IBAN_CHARS` characters in all, whose ISO 13616 rearrangement is 1 mod 97; the
  country's registered length is not checked;
- ``phone``: Google's libphonenumber (the ``phonenumbers`` package) parses the match and says it is
  a valid number; a number without ``+`` is read as a number of :data:`DEFAULT_PHONE_REGION`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from shield.rules import VALIDATORS

__all__ = [
    "DEFAULT_PHONE_REGION",
    "MAX_CARD_DIGITS",
    "MAX_IBAN_CHARS",
    "MIN_CARD_DIGITS",
    "MIN_IBAN_CHARS",
    "VALIDATOR_FUNCTIONS",
    "iban",
    "luhn",
    "phone",
    "validate",
]

#: Payment-card numbers (primary account numbers) have 12 to 19 digits (ISO/IEC 7812-1).
MIN_CARD_DIGITS = 12
MAX_CARD_DIGITS = 19
#: The shortest IBAN (Norway) has 15 characters; none may exceed 34 (ISO 13616-1).
MIN_IBAN_CHARS = 15
MAX_IBAN_CHARS = 34
#: The region a phone number without a ``+`` country code is read in (libphonenumber's region
#: code); the library ``pii`` spec's national rule is for North American numbers.
DEFAULT_PHONE_REGION = "US"


def luhn(text: str) -> bool:
    """Whether the digits of ``text`` form a payment-card number that passes the Luhn checksum.

    Args:
        text: the matched text (digits, possibly grouped by spaces or dashes).

    Returns:
        True when it has 12-19 ASCII digits whose Luhn sum is a multiple of 10.

    Example:
        >>> luhn("4111 1111 1111 1111"), luhn("4111 1111 1111 1112")
        (True, False)
    """
    digits = [int(char) for char in text if "0" <= char <= "9"]
    if not MIN_CARD_DIGITS <= len(digits) <= MAX_CARD_DIGITS:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):  # from the check digit leftwards
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban(text: str) -> bool:
    """Whether ``text`` is an IBAN whose check digits are right (ISO 13616, mod 97).

    Args:
        text: the matched text (upper-case letters and digits, possibly grouped by spaces).

    Returns:
        True when it has the IBAN form and its rearrangement is 1 mod 97.

    Example:
        >>> iban("GB82 WEST 1234 5698 7654 32"), iban("GB83 WEST 1234 5698 7654 32")
        (True, False)
    """
    compact = text.replace(" ", "").upper()
    if not (MIN_IBAN_CHARS <= len(compact) <= MAX_IBAN_CHARS and compact.isascii()):
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit() and compact[4:].isalnum()):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def phone(text: str) -> bool:
    """Whether libphonenumber reads ``text`` as a valid phone number.

    Args:
        text: the matched text (``+CC ...`` or a national number of :data:`DEFAULT_PHONE_REGION`).

    Returns:
        True when it parses and is a valid number for its region (libphonenumber's metadata:
        country code, length and number ranges).

    Example:
        >>> phone("+44 20 7946 0958"), phone("+1 123 456 7890")
        (True, False)
    """
    import phonenumbers  # a dependency; imported here so that ``import shield`` stays light

    try:
        number = phonenumbers.parse(text, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


#: The function of each name of :data:`shield.rules.VALIDATORS`.
VALIDATOR_FUNCTIONS: Mapping[str, Callable[[str], bool]] = MappingProxyType(
    {"luhn": luhn, "iban": iban, "phone": phone}
)
if tuple(VALIDATOR_FUNCTIONS) != VALIDATORS:  # one list of names: the vocabulary's
    raise ImportError(
        f"shield.validators implements {tuple(VALIDATOR_FUNCTIONS)} but shield.rules.VALIDATORS"
        f" names {VALIDATORS}; keep them equal"
    )


def validate(name: str, text: str) -> bool:
    """Run validator ``name`` on a matched text.

    Args:
        name: one of :data:`shield.rules.VALIDATORS`.
        text: the full match.

    Returns:
        Whether the match passes (a match that fails is not reported by a scan).

    Raises:
        ValueError: ``name`` is not a validator (rules refuse unknown names when they are built,
            so this means a rule value was forged).
    """
    function = VALIDATOR_FUNCTIONS.get(name)
    if function is None:
        raise ValueError(f"unknown validator {name!r}; expected one of {', '.join(VALIDATORS)}")
    return function(text)
