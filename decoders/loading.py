"""``load_model``: the bundled SmolLM2, a GGUF file or a Hugging Face directory, cached on disk.

The first load of a file converts it (dequantise, un-permute, build the tokenizer) and stores the
result under ``$SHIELD_CACHE_DIR`` (default ``~/.cache/shield``), keyed by the source's resolved
path, size and modification time; later loads read that entry and take seconds. An unreadable
entry is rebuilt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from pathlib import Path

from decoders.config import ModelConfig
from decoders.model import Params
from decoders.native import require_kernel
from decoders.paths import BUNDLED_NAMES, bundled_model_path, cache_root
from decoders.quantize import WEIGHT_FORMATS
from decoders.sources import Converted, read_gguf, read_hf_directory
from decoders.tokenizer import Tokenizer
from decoders.weights import params_from_named, read_cache, write_cache
from shield.errors import DecoderError, ModelLoadError

__all__ = ["Model", "load_model"]

#: Bumped whenever the cached format or the conversion changes.
_CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Model:
    """A loaded model: static configuration plus parameters on device.

    Attributes:
        config: the shapes (a static argument of every jitted piece).
        params: the weights.
        source: where it was loaded from.
    """

    config: ModelConfig
    params: Params
    source: str


def _resolve(name_or_path: str | os.PathLike[str] | None) -> Path:
    if name_or_path is None or str(name_or_path).lower() in BUNDLED_NAMES:
        return bundled_model_path()
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"{path}: no such model file or directory; expected a .gguf file, a Hugging Face "
            f"directory, or one of {BUNDLED_NAMES}."
        )
    return path.resolve()


def _cache_key(path: Path) -> str:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256(f"format={_CACHE_FORMAT}|{path}".encode())
    for file in files:
        info = file.stat()
        digest.update(f"|{file.name}|{info.st_size}|{info.st_mtime_ns}".encode())
    return f"{path.stem}-{digest.hexdigest()[:16]}"


def _convert(path: Path) -> Converted:
    if path.is_dir():
        return read_hf_directory(path)
    if path.suffix.lower() != ".gguf":
        raise ModelLoadError(
            f"{path}: unknown model format; expected a .gguf file or a Hugging Face directory."
        )
    return read_gguf(path)


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    dtype: str = "float32",
    weights: str = "dense",
    use_cache: bool = True,
) -> tuple[Model, Tokenizer]:
    """Load a model and its tokenizer.

    Args:
        name_or_path: None or ``"smollm2"`` for the bundled SmolLM2-135M-Instruct; otherwise a
            ``.gguf`` file or a Hugging Face directory (config.json, safetensors, tokenizer.json).
        dtype: ``"float32"`` (the CPU default) or ``"bfloat16"``.
        weights: ``"dense"`` (weights in ``dtype``, the default) or ``"int8"`` (projections and
            embeddings as int8 rows with per-row scales; see :mod:`decoders.quantize`; on a CPU
            it compiles a native kernel once).
        use_cache: read and write the converted-model cache (see :func:`cache_root`).

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ModelLoadError: the file is missing, corrupt or unsupported (the message names it).
        DecoderError: ``weights`` is not a known format.
        decoders.native.NativeKernelError: int8 weights on a CPU whose kernel cannot be built.

    Example:
        >>> model, tokenizer = load_model()  # doctest: +SKIP
        >>> model.config.num_layers  # doctest: +SKIP
        30
    """
    if weights not in WEIGHT_FORMATS:
        raise DecoderError(
            f"load_model: weights must be one of {WEIGHT_FORMATS}, received {weights!r}."
        )
    path = _resolve(name_or_path)
    entry = cache_root() / "models" / _cache_key(path)
    converted = None
    if use_cache and (entry / "meta.json").is_file():
        try:
            config, named, tokenizer_json, meta = read_cache(entry)
            converted = Converted(
                config=config,
                named=named,
                tokenizer_json=tokenizer_json,
                chat_template=meta.get("chat_template"),
            )
        except ModelLoadError:
            converted = None  # rebuilt below
    if converted is None:
        converted = _convert(path)
        if use_cache:
            with contextlib.suppress(OSError):  # a read-only cache only costs speed
                write_cache(
                    entry,
                    converted.config,
                    converted.named,
                    converted.tokenizer_json,
                    {"chat_template": converted.chat_template, "source": str(path)},
                )
    config = dataclasses.replace(converted.config, dtype=dtype)
    if weights == "int8":
        require_kernel()
    params = params_from_named(config, converted.named, path, int8=weights == "int8")
    tokenizer = Tokenizer(
        converted.tokenizer_json,
        eos_token_ids=config.eos_token_ids,
        bos_token_id=config.bos_token_id,
        chat_template=converted.chat_template,
        source=str(path),
    )
    return Model(config=config, params=params, source=str(path)), tokenizer
