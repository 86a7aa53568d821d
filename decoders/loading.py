"""``load_model``: the bundled SmolLM2, a GGUF file or a Hugging Face directory.

A Hugging Face directory is read as it ships (:mod:`decoders.checkpoint`): single-file or sharded
safetensors, each tensor read in the file's dtype, converted on its own to the model's dtype and
placed straight onto the device, or onto a mesh with its sharding (:func:`decoders.sharding.placer`).
No whole-model float32 copy exists on the host and nothing is written to disk; by default the
model runs in the dtype its ``config.json`` declares.

A GGUF file is quantised, so its first load converts it (dequantise, un-permute, build the
tokenizer) and stores the result under ``$SHIELD_CACHE_DIR`` (default ``~/.cache/shield``), keyed
by the file's resolved path, size and modification time; later loads read that entry and take
seconds. An unreadable entry is rebuilt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from pathlib import Path

from jax.sharding import Mesh

from decoders.config import DTYPES, ModelConfig
from decoders.gguf_model import DEFAULT_ACTIVATIONS, read_gguf_blocks
from decoders.model import Params
from decoders.native import require_kernel
from decoders.paths import BUNDLED_NAMES, bundled_model_path, cache_root
from decoders.quantize import WEIGHT_FORMATS
from decoders.sharding import placer
from decoders.sources import Converted, read_gguf, read_hf_directory
from decoders.tokenizer import Tokenizer
from decoders.weights import params_from_named, read_cache, write_cache
from shield.errors import DecoderError, ModelLoadError

__all__ = ["Model", "load_model"]

#: Bumped whenever the cached format or the conversion changes.
_CACHE_FORMAT = 2


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
    info = path.stat()
    digest = hashlib.sha256(f"format={_CACHE_FORMAT}|{path}".encode())
    digest.update(f"|{path.name}|{info.st_size}|{info.st_mtime_ns}".encode())
    return f"{path.stem}-{digest.hexdigest()[:16]}"


def _read_gguf_cached(path: Path, use_cache: bool) -> Converted:
    """A GGUF file converted, through the on-disk cache when ``use_cache``."""
    if path.suffix.lower() != ".gguf":
        raise ModelLoadError(
            f"{path}: unknown model format; expected a .gguf file or a Hugging Face directory."
        )
    entry = cache_root() / "models" / _cache_key(path)
    if use_cache and (entry / "meta.json").is_file():
        try:
            config, named, tokenizer_json, meta = read_cache(entry)
            return Converted(
                config=config,
                named=named,
                tokenizer_json=tokenizer_json,
                chat_template=meta.get("chat_template"),
                adoptable=True,
            )
        except ModelLoadError:
            pass  # rebuilt below
    converted = read_gguf(path)
    if use_cache:
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            write_cache(
                entry,
                converted.config,
                converted.named,
                converted.tokenizer_json,
                {"chat_template": converted.chat_template, "source": str(path)},
            )
    return converted


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    dtype: str | None = None,
    weights: str = "dense",
    use_cache: bool = True,
    mesh: Mesh | None = None,
    activations: str | None = None,
) -> tuple[Model, Tokenizer]:
    """Load a model and its tokenizer.

    Args:
        name_or_path: None or ``"smollm2"`` for the bundled SmolLM2-135M-Instruct; otherwise a
            ``.gguf`` file or a Hugging Face directory (``config.json``, ``model.safetensors`` or
            ``model.safetensors.index.json`` with its shards, ``tokenizer.json``, optionally
            ``tokenizer_config.json`` / ``chat_template.jinja``).
        dtype: ``"float32"`` or ``"bfloat16"``. Default: a Hugging Face directory's own dtype
            (``dtype`` or ``torch_dtype`` of its ``config.json``; ``float16`` widens to float32,
            none declared means float32); float32 for GGUF files and the bundled model.
        weights: ``"dense"`` (weights in ``dtype``, the default) or ``"int8"`` (projections and
            embeddings as int8 rows with per-block scales; see :mod:`decoders.quantize`; on a CPU
            it compiles a native kernel once) or ``"gguf"`` (a GGUF file's own blocks, Q4_0,
            Q4_1, Q8_0, Q4_K or Q6_K, memory-mapped and decoded inside each product; see
            :mod:`decoders.gguf_model`).
        use_cache: read and write the converted-model cache of GGUF files (see
            :func:`cache_root`); Hugging Face directories are never cached.
        mesh: place the weights on this mesh, each with its sharding
            (:func:`decoders.sharding.make_mesh`); None places them on the default device.
        activations: with ``weights="gguf"``, what the CPU kernel multiplies the blocks with:
            ``"int8"`` (the activations quantised per block of 32, integer block products, as
            llama.cpp does) or ``"float32"`` (exact: the weights are ``gguf.quants.dequantize``'s
            and the products float32); None means
            :data:`decoders.gguf_model.DEFAULT_ACTIVATIONS`. Refused with other weights.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ModelLoadError: the file is missing, corrupt or unsupported (the message names the file,
            and the tensor or configuration key).
        DecoderError: ``weights`` or ``dtype`` is not a known value.
        decoders.native.NativeKernelError: int8 weights on a CPU whose kernel cannot be built.

    Example:
        >>> model, tokenizer = load_model()  # doctest: +SKIP
        >>> model.config.num_layers  # doctest: +SKIP
        30
        >>> model, tokenizer = load_model("Llama-3.2-1B-Instruct")  # bfloat16, its own dtype  # doctest: +SKIP
    """
    if weights not in WEIGHT_FORMATS:
        raise DecoderError(
            f"load_model: weights must be one of {WEIGHT_FORMATS}, received {weights!r}."
        )
    if dtype is not None and dtype not in DTYPES:
        raise DecoderError(
            f"load_model: dtype must be one of {DTYPES} or None, received {dtype!r}."
        )
    if activations is not None and weights != "gguf":
        raise DecoderError(
            f"load_model: activations={activations!r} applies to weights='gguf' only, received "
            f"weights={weights!r}; leave activations unset."
        )
    path = _resolve(name_or_path)
    if weights == "gguf":  # the file's own blocks, memory-mapped; no conversion cache
        if mesh is not None or path.is_dir() or path.suffix.lower() != ".gguf":
            raise DecoderError(
                f"load_model: weights='gguf' needs a .gguf file on one device, received {path}"
                f"{' with a mesh' if mesh is not None else ''}; use weights='dense' or 'int8'."
            )
        require_kernel()
        converted, params = read_gguf_blocks(
            path, dtype=dtype, activations=activations or DEFAULT_ACTIVATIONS
        )
        config = converted.config
    else:
        converted = read_hf_directory(path) if path.is_dir() else _read_gguf_cached(path, use_cache)
        chosen = dtype or converted.checkpoint_dtype or "float32"
        config = dataclasses.replace(converted.config, dtype=chosen)
        if weights == "int8":
            require_kernel()
        params = params_from_named(
            config,
            converted.named,
            path,
            int8=weights == "int8",
            put=placer(mesh, adopt=converted.adoptable),
        )
    tokenizer = Tokenizer(
        converted.tokenizer_json,
        eos_token_ids=config.eos_token_ids,
        bos_token_id=config.bos_token_id,
        chat_template=converted.chat_template,
        special_tokens=converted.chat.special_tokens if converted.chat else (),
        source=str(path),
    )
    return Model(config=config, params=params, source=str(path)), tokenizer
