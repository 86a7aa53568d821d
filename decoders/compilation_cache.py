"""JAX's persistent compilation cache under the project's cache root.

Every new process compiles the decoder's jitted functions again (prefill, the shielded decode
loop, the small host-side helpers): about as long as decoding a short answer on a CPU. JAX can
keep the compiled executables on disk, keyed by the lowered program, the JAX and jaxlib versions,
the backend and the compile options, so a later process with the same shapes loads them instead.
Its defaults only cache compilations that took a second or more; ours are many small ones, so the
thresholds are lowered to cache every one of them.

The command line turns the cache on (``shield generate``; ``--no-cache`` or
``SHIELD_NO_CACHE=1`` turn it off). A library user turns it on once, before the first generation::

    import decoders
    decoders.enable_compilation_cache()      # cache_root()/jax, unless SHIELD_NO_CACHE is set
"""

from __future__ import annotations

from pathlib import Path

import jax

from decoders.aot import set_aot_enabled
from shield.store import cache_enabled, cache_root

__all__ = ["MAX_CACHE_BYTES", "compilation_cache_dir", "enable_compilation_cache"]

#: Bound on the size of the cache folder; JAX evicts the least recently used entries beyond it.
MAX_CACHE_BYTES = 2 << 30


def compilation_cache_dir() -> Path:
    """The folder of JAX's compilation cache.

    Returns:
        ``cache_root()/jax``.
    """
    return cache_root() / "jax"


def enable_compilation_cache(directory: Path | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache (and :mod:`decoders.aot`'s exports) for this process.

    Call it before the first jitted call whose compilation should be cached; calling it again is
    harmless (the settings are the same).

    Args:
        directory: where the executables are stored; :func:`compilation_cache_dir` when None.

    Returns:
        The folder in use, or None when caching is off (``$SHIELD_NO_CACHE``, or inside
        ``shield.store.caching(False)``; see :func:`shield.store.cache_enabled`), in which case
        nothing is changed.

    Example:
        >>> import decoders
        >>> decoders.enable_compilation_cache()  # doctest: +SKIP
        PosixPath('/home/me/.cache/shield/jax')
    """
    if not cache_enabled(default=True):
        return None
    folder = Path(directory) if directory is not None else compilation_cache_dir()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every compilation, however quick or small: a start pays for dozens of small ones.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_max_size", MAX_CACHE_BYTES)
    set_aot_enabled(True)  # the decoder's exported programs (decoders.aot), same switch
    return folder
