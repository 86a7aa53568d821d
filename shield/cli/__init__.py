"""The ``shield`` command line: ``check``, ``scan``, ``generate``, ``eval``.

The CLI is the composition root of the project: it is the one place in ``shield`` that reaches
into ``specs`` (to load a spec) and, lazily and only for ``generate``, into ``decoders`` (which
needs JAX). ``import shield.cli`` therefore works without JAX.

Every command runs with the compile caches on (compiled shields and JAX compilations under
``$SHIELD_CACHE_DIR``, see :mod:`shield.store`) unless ``SHIELD_NO_CACHE=1`` is set or
``generate --no-cache`` is given.

Exit codes: 0 on success, 1 when ``scan`` finds a violation, 2 on bad input with a one-line reason
on standard error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shield.cli import check, evaluate, export, generate, scan
from shield.errors import ShieldError
from shield.store import caching

__all__ = ["main"]

#: The subcommands, by the name typed on the command line.
_SUBCOMMANDS = {
    "check": check,
    "scan": scan,
    "generate": generate,
    "eval": evaluate,
    "export": export,
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shield",
        description="Compile safety specs into automaton shields and run them over LLM generation.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _SUBCOMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 on success, 1 when ``scan`` finds a violation, 2 on bad input.

    Example:
        >>> main(["check", "specs/library/pii.toml"])  # doctest: +SKIP
        0
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        with caching(True):
            return int(args.run(args))
    except ShieldError as error:
        print(f"shield {args.command}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"shield {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
