"""Plant each bug of ``mutants.toml`` in turn and check that the guarantee's tests catch it.

``make mutants`` runs this. A mutant is one exact text replacement in one source file; it is
*killed* when the test group of its guarantee fails with the bug planted. The file is restored
after every mutant, also when the run is interrupted. A mutant whose text is not found exactly
once is an error (a stale list must not pass silently), and so is a guarantee without a mutant.

Usage::

    python -m tests.mutation.run                 # every mutant against its guarantee's tests
    python -m tests.mutation.run --only ban-off-by-one
    python -m tests.mutation.run --every-group   # also which other groups kill each mutant

Exit status: 0 when every mutant is killed, 1 when one survives, 2 on a malformed list.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIST = Path(__file__).with_name("mutants.toml")
#: The guarantees of proofs/README.md; each needs at least one mutant that its tests kill.
GUARANTEES = (
    "termination",
    "bounded-rollback",
    "soundness",
    "transparency",
    "progress",
    "rewind-equivalence",
)
#: The most seconds one test run may take before the mutant counts as killed by a timeout
#: (a planted bug that makes decoding loop forever is caught by this bound).
RUN_SECONDS = 900


@dataclass(frozen=True, kw_only=True)
class Mutant:
    """One planted bug: replace ``find`` by ``replace`` in ``path``."""

    id: str
    guarantee: str
    path: str
    find: str
    replace: str
    why: str


def load(path: Path = LIST) -> tuple[dict[str, list[str]], list[Mutant]]:
    """The test groups per guarantee and the mutants, validated.

    Raises:
        SystemExit: the list is malformed (status 2, with the reason).
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    groups = {name: list(tests) for name, tests in data.get("groups", {}).items()}
    mutants = [Mutant(**entry) for entry in data.get("mutant", [])]
    problems = [f"guarantee {g!r} has no test group" for g in GUARANTEES if g not in groups]
    problems += [
        f"guarantee {g!r} has no mutant"
        for g in GUARANTEES
        if not any(m.guarantee == g for m in mutants)
    ]
    ids = [m.id for m in mutants]
    problems += [f"mutant id {i!r} is used twice" for i in sorted(set(ids)) if ids.count(i) > 1]
    for mutant in mutants:
        if mutant.guarantee not in GUARANTEES:
            problems.append(f"{mutant.id}: unknown guarantee {mutant.guarantee!r}")
            continue
        count = (ROOT / mutant.path).read_text(encoding="utf-8").count(mutant.find)
        if count != 1:
            problems.append(f"{mutant.id}: {mutant.find!r} occurs {count} times in {mutant.path}")
    if problems:
        print("mutants.toml: " + "; ".join(problems), file=sys.stderr)
        raise SystemExit(2)
    return groups, mutants


def killed_by(mutant: Mutant, tests: list[str]) -> tuple[bool, float]:
    """Plant ``mutant``, run ``tests``, restore; whether the tests failed, and the seconds taken."""
    target = ROOT / mutant.path
    original = target.read_text(encoding="utf-8")
    began = time.perf_counter()
    try:
        target.write_text(original.replace(mutant.find, mutant.replace, 1), encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
        try:
            result = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_SECONDS,
                env={**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "default")},
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return True, time.perf_counter() - began
        # 1: tests failed (killed); 5: no tests ran, a broken group, never counted as a kill.
        if result.returncode not in (0, 1):
            tail = "\n".join(result.stdout.splitlines()[-5:])
            raise SystemExit(f"{mutant.id}: pytest exited {result.returncode}:\n{tail}")
        return result.returncode == 1, time.perf_counter() - began
    finally:
        target.write_text(original, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the mutants; print one line each and a summary per guarantee."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="ID")
    parser.add_argument("--every-group", action="store_true")
    args = parser.parse_args(argv)
    groups, mutants = load()
    chosen = [m for m in mutants if not args.only or m.id in args.only]
    survivors, caught = [], set()
    for mutant in chosen:
        killed, seconds = killed_by(mutant, groups[mutant.guarantee])
        line = f"{'killed  ' if killed else 'SURVIVED'} {mutant.id:32} {mutant.guarantee:20} {seconds:6.1f} s"
        if args.every_group:
            others = [
                g for g in GUARANTEES if g != mutant.guarantee and killed_by(mutant, groups[g])[0]
            ]
            line += f"  also killed by: {', '.join(others) or 'no other group'}"
        print(line, flush=True)
        if killed:
            caught.add(mutant.guarantee)
        else:
            survivors.append(mutant.id)
    if not args.only:
        for guarantee in GUARANTEES:
            if guarantee not in caught:
                print(f"no mutant of {guarantee} was killed by its tests")
                survivors.append(guarantee)
    print(
        f"{len(chosen) - len([s for s in survivors if s not in GUARANTEES])} of {len(chosen)} mutants killed"
    )
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
