"""Precision and recall of the library ``pii`` spec, with and without its validators (not a test).

Run: ``python -m bench.bench_pii [--per-class N] [--seed S]``. A seeded generator writes sentences
that each hold one payment-card number, IBAN or phone number, valid or not, plus sentences with
no personal data (years, prices, dates, order numbers); nothing is read from disk or the network.

- cards: issuer prefixes of Visa, Mastercard, Amex, Discover, Diners, JCB and UnionPay with their
  lengths, a random body and the Luhn check digit (valid) or any other check digit (invalid),
  written plain or grouped by spaces or dashes;
- IBANs: twelve countries' lengths and bank-code letters, check digits computed by ISO 13616
  (valid) or off by one (invalid), plain or in groups of four;
- phones: libphonenumber's example numbers of twelve regions with their last digits redrawn until
  the number is valid (valid), or until it is not (invalid), in international or national format.
  For phones the ground truth is libphonenumber's own verdict, so that column measures what the
  regexes lose and admit, not libphonenumber's accuracy.

A planted number counts as found when a violation of its class's rules overlaps it; a valid one
found is a true positive, an invalid one found a false positive, a valid one missed a false
negative, and a violation that overlaps no number of its class (card digits inside an IBAN, a
year) is a false positive too. "exact" is the share of true positives whose reported span is the
whole planted number. Last, the time of a full-span scan of long texts (10,000 characters of
generated prose, clean or with one violation in the middle) beside the decoder's verdict on them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers

import specs
from shield.validators import iban as iban_ok

#: Class of each rule of the library pii spec (email is not measured here).
RULE_CLASS = {
    "payment-card": "card",
    "iban": "iban",
    "phone-international": "phone",
    "phone-us": "phone",
}
CLASSES = ("card", "iban", "phone")
#: (prefix, length) of card issuers (ISO/IEC 7812 issuer identification numbers).
CARD_ISSUERS = (
    ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16),
    ("65", 16), ("36", 14), ("3528", 16), ("62", 16), ("62", 19), ("4", 13),
)  # fmt: skip
#: Country, BBAN layout (``n`` digit, ``a`` upper-case letter, ``c`` either), from the IBAN registry.
IBAN_LAYOUTS = (
    ("DE", "n" * 18), ("GB", "aaaa" + "n" * 14), ("FR", "n" * 10 + "c" * 11 + "nn"),
    ("NL", "aaaa" + "n" * 10), ("ES", "n" * 20), ("IT", "a" + "n" * 10 + "c" * 12),
    ("CH", "n" * 5 + "c" * 12), ("NO", "n" * 11), ("BE", "n" * 12), ("AT", "n" * 16),
    ("PL", "n" * 24), ("SE", "n" * 20),
)  # fmt: skip
PHONE_REGIONS = ("US", "GB", "FR", "DE", "IT", "ES", "NL", "AU", "JP", "BR", "IN", "CH")
TEMPLATES = {
    "card": ("My card is {} and it expires soon.", "Please charge {} for the order.",
             "Card number: {}.", "I paid with {} yesterday."),
    "iban": ("Transfer the money to {} by Friday.", "IBAN {}", "Our account is {}, thanks.",
             "Send it to {} please."),
    "phone": ("Call me at {} tomorrow.", "You can reach the office on {}.", "Phone: {}",
              "My number is {}, text me."),
}  # fmt: skip
NEGATIVES = (
    "In {y}, {n} people attended the meeting.", "The price is ${n},{d3}.99 including tax.",
    "Meeting on {y}-0{m}-1{m} at 10:30, room {n}.", "Order id {o} shipped on time.",
    "ISBN 978-0-{d3}-{d5}-{m}, version {m}.{m}.{m}.", "Tracking {o}{d3} arrives in {m} days.",
)  # fmt: skip
_FUEL = 1000  # redraws allowed for one valid or invalid phone number


@dataclass(frozen=True)
class Sample:
    """One sentence and the number planted in it (``kind`` is None for a negative sentence)."""

    text: str
    kind: str | None = None
    start: int = 0
    end: int = 0
    valid: bool = False


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def _luhn_digit(payload: str) -> str:
    """The check digit that completes ``payload`` (computed here, not by the validator measured)."""
    return next(d for d in "0123456789" if _luhn_sum(payload + d) % 10 == 0)


def _luhn_sum(number: str) -> int:
    return sum(
        sum(divmod(int(d) * (2 if i % 2 else 1), 10)) for i, d in enumerate(reversed(number))
    )


def card(rng: random.Random, valid: bool) -> str:
    """A card number of a real issuer's prefix and length, grouped as people write it."""
    prefix, length = rng.choice(CARD_ISSUERS)
    payload = prefix + _digits(rng, length - len(prefix) - 1)
    right = _luhn_digit(payload)
    number = payload + (right if valid else rng.choice([d for d in "0123456789" if d != right]))
    separator = rng.choice(["", " ", "-"])
    groups = {15: (4, 6, 5), 14: (4, 6, 4)}.get(length, tuple([4] * (length // 4)))
    if not separator or sum(groups) != length:
        return number
    out, at = [], 0
    for size in groups:
        out.append(number[at : at + size])
        at += size
    return separator.join(out)


def iban(rng: random.Random, valid: bool) -> str:
    """An IBAN of a registry layout, with right (or wrong) check digits."""
    country, layout = rng.choice(IBAN_LAYOUTS)
    letters, alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    bban = "".join(
        rng.choice("0123456789" if c == "n" else letters if c == "a" else alnum) for c in layout
    )
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - numeric % 97
    if not valid:
        check = (check + rng.randint(1, 96) - 2) % 97 + 2  # any other pair in 02..98
    number = f"{country}{check:02d}{bban}"
    assert iban_ok(number) == valid, number
    if rng.random() < 0.5:
        return number
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def phone(rng: random.Random, valid: bool) -> str:
    """A phone number of a region, valid or not by libphonenumber, as people write it."""
    region = rng.choice(PHONE_REGIONS)
    kind = rng.choice(
        [phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]
    )
    example = phonenumbers.example_number_for_type(region, kind)
    national = str(example.national_number)
    for _ in range(_FUEL):  # fuel: redraw until the verdict is the one asked for
        tail = rng.randint(2, min(5, len(national) - 1))
        candidate = phonenumbers.PhoneNumber()
        candidate.merge_from(example)  # keeps the region's flags (Italy's leading zero)
        candidate.national_number = int(national[:-tail] + _digits(rng, tail))
        if not valid and phonenumbers.is_valid_number(candidate):
            # Break it as a typo would: change, drop or add one digit.
            digits = str(candidate.national_number)
            at = rng.randrange(len(digits))
            digits = rng.choice(
                [
                    digits[:at] + _digits(rng, 1) + digits[at + 1 :],
                    digits[:at] + digits[at + 1 :],
                    digits[:at] + _digits(rng, 1) + digits[at:],
                ]
            )
            candidate.national_number = int(digits or "0")
        if phonenumbers.is_valid_number(candidate) == valid:
            national_format = region == "US" and rng.random() < 0.5
            style = phonenumbers.PhoneNumberFormat
            return phonenumbers.format_number(
                candidate, style.NATIONAL if national_format else style.INTERNATIONAL
            )
    raise RuntimeError(f"no {'valid' if valid else 'invalid'} number for {region} in {_FUEL} draws")


MAKERS: dict[str, Callable[[random.Random, bool], str]] = {
    "card": card,
    "iban": iban,
    "phone": phone,
}


def corpus(per_class: int, seed: int) -> list[Sample]:
    """``per_class`` valid and ``per_class`` invalid sentences of each class, and negatives."""
    rng = random.Random(seed)
    samples = []
    for kind in CLASSES:
        for valid in (True, False):
            for _ in range(per_class):
                number = MAKERS[kind](rng, valid)
                before, after = rng.choice(TEMPLATES[kind]).split("{}")
                text = before + number + after
                samples.append(Sample(text, kind, len(before), len(before) + len(number), valid))
    for _ in range(per_class):
        fields = {
            "y": str(rng.randint(1950, 2030)), "n": str(rng.randint(10, 9999)),
            "m": str(rng.randint(1, 9)), "o": _digits(rng, rng.randint(8, 12)),
            "d3": _digits(rng, 3), "d5": _digits(rng, 5),
        }  # fmt: skip
        samples.append(Sample(rng.choice(NEGATIVES).format(**fields)))
    return samples


def measure(samples: list[Sample], *, validators: bool) -> dict[str, dict[str, float]]:
    """Per class: true/false positives, false negatives, precision, recall, exact spans, time."""
    guard = specs.shield_for(specs.load_library("pii"))
    counts = {kind: {"tp": 0, "fp": 0, "fn": 0, "exact": 0} for kind in CLASSES}
    times = []
    for sample in samples:
        began = time.perf_counter()
        found = guard.scan(sample.text, validators=validators)
        times.append(time.perf_counter() - began)
        hit, exact = False, False
        for v in found:
            kind = RULE_CLASS.get(v.rule)
            if kind is None:
                continue
            if kind == sample.kind and v.start < sample.end and sample.start < v.end:
                hit = True
                exact = exact or (v.start, v.end) == (sample.start, sample.end)
            else:
                counts[kind]["fp"] += 1  # a violation that overlaps no number of its class
        if sample.kind is not None:
            row = counts[sample.kind]
            if hit and sample.valid:
                row["tp"] += 1
                row["exact"] += exact
            elif hit:
                row["fp"] += 1
            elif sample.valid:
                row["fn"] += 1
    table: dict[str, dict[str, float]] = {}
    for kind, row in counts.items():
        tp, fp, fn = row["tp"], row["fp"], row["fn"]
        table[kind] = {
            **row,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
            "exact_share": row["exact"] / tp if tp else 1.0,
        }
    table["_time"] = {"median_ms": 1000 * statistics.median(times), "total_s": sum(times)}
    return table


#: Long texts for the scan timings: (spec, what is planted in the middle).
LONG_TEXTS = (
    ("toxicity", None),
    ("toxicity", "fuck"),
    ("pii", "call +44 20 7946 0958 now"),
    ("secrets", "AKIAIOSFODNN7EXAMPLE"),
)
_FILLER = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "and",
    "then",
    "some",
    "more",
    "words",
    "appear",
    "here",
]


def long_scans(chars: int, repeats: int, seed: int) -> list[tuple[str, str, float, float]]:
    """Median seconds of ``scan`` and of ``first_violation`` on a ``chars``-long generated text."""
    rng = random.Random(seed)
    rows = []
    for name, planted in LONG_TEXTS:
        guard = specs.shield_for(specs.load_library(name))
        words = " ".join(rng.choice(_FILLER) for _ in range(chars // 5))[:chars]
        middle = len(words) // 2
        text = words if planted is None else f"{words[:middle]} {planted} {words[middle:]}"
        guard.scan(text)  # builds the lazy pattern NFAs once, outside the timing
        scans, verdicts = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            guard.scan(text)
            scans.append(time.perf_counter() - began)
            began = time.perf_counter()
            guard.first_violation(text.encode(), final=True)
            verdicts.append(time.perf_counter() - began)
        label = "clean" if planted is None else f"one {planted!r} in the middle"
        rows.append((name, label, statistics.median(scans), statistics.median(verdicts)))
    return rows


def main() -> None:
    """Print the table (markdown) of both runs on one corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=300, help="valid (and invalid) per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-chars", type=int, default=10_000, help="length of the long texts")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per long text")
    args = parser.parse_args()
    samples = corpus(args.per_class, args.seed)
    runs = {flag: measure(samples, validators=flag) for flag in (False, True)}
    print(f"corpus: {len(samples)} sentences (seed {args.seed}, {args.per_class} valid and"
          f" {args.per_class} invalid per class, {args.per_class} without personal data)")  # fmt: skip
    print("| class | validators | TP | FP | FN | precision | recall | exact spans |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in CLASSES:
        for flag in (False, True):
            r = runs[flag][kind]
            print(
                f"| {kind} | {'on' if flag else 'off'} | {r['tp']:.0f} | {r['fp']:.0f} |"
                f" {r['fn']:.0f} | {r['precision']:.3f} | {r['recall']:.3f} |"
                f" {r['exact_share']:.3f} |"
            )
    for flag in (False, True):
        t = runs[flag]["_time"]
        print(
            f"scan with validators {'on' if flag else 'off'}: median {t['median_ms']:.2f} ms"
            f" per sentence, {t['total_s']:.2f} s in all"
        )
    print(f"\nscan of a {args.long_chars}-character text, median of {args.repeats} runs:")
    print("| spec | text | scan | first_violation (the decoder's verdict) |")
    print("|---|---|---|---|")
    for name, label, scan_s, verdict_s in long_scans(args.long_chars, args.repeats, args.seed):
        print(f"| {name} | {label} | {1000 * scan_s:.1f} ms | {1000 * verdict_s:.1f} ms |")


if __name__ == "__main__":
    main()
