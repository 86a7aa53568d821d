"""How long JAX spent compiling: so that measured throughput can leave compilation out.

The first call of a jitted function for a new shape traces, lowers and compiles it; on a CPU that
can take longer than the decoding it precedes, so a throughput measured over such a call says more
about the order in which strategies ran than about the strategies (the first one pays for the
compilations the others reuse). :class:`CompileClock` adds up JAX's own compile-time events
(``jax.monitoring``: tracing, lowering to MLIR, backend compilation) while it is open, and the
evaluation subtracts that time from each call's wall time.
"""

from __future__ import annotations

import threading
from types import TracebackType

import jax

__all__ = ["COMPILE_EVENTS", "CompileClock"]

#: The ``jax.monitoring`` duration events that make up a compilation.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)

_lock = threading.Lock()
_open: list[CompileClock] = []
_registered = False


def _listener(event: str, duration_secs: float, **_: str | int) -> None:
    if event in COMPILE_EVENTS:
        with _lock:
            for clock in _open:
                clock.seconds += duration_secs


class CompileClock:
    """Seconds JAX spent compiling between ``__enter__`` and ``__exit__`` (any thread).

    Attributes:
        seconds: the compile time counted so far.

    Example:
        >>> with CompileClock() as clock:  # doctest: +SKIP
        ...     generate(model, tokenizer, prompts, max_new_tokens=8)
        >>> clock.seconds  # doctest: +SKIP
        3.2
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> CompileClock:
        global _registered
        with _lock:
            if not _registered:  # one listener for the process; jax keeps it for good
                jax.monitoring.register_event_duration_secs_listener(_listener)
                _registered = True
            _open.append(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with _lock:
            _open.remove(self)
