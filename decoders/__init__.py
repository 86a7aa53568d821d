"""decoders: the JAX reference decoder (Llama-family model, KV cache, sampling, loading).

Entry points: :func:`load_model` and :func:`generate` (every strategy; see :mod:`decoders.api`). The composable pieces a decoding strategy
is built from (all pure; see :mod:`decoders.step` for how a loop body composes them):

* state: :class:`DecodeState`, :class:`Snapshot`, :func:`init_state`, :func:`append`,
  :func:`snapshot`, :func:`rewind`, :func:`finish`;
* model steps: :func:`prefill`, :func:`decode_logits`, :func:`advance`, :func:`plain_step`,
  :func:`decode_loop`, :func:`run`;
* sampling: :class:`SamplingConfig`, :func:`row_keys`, :func:`sample`;
* host side: :class:`DecodeOptions` (the generation arguments), :func:`prepare`,
  :func:`collect`, :class:`GenerationResult`;
* sharding: :func:`make_mesh` (``data`` and ``model`` axes), :func:`shard_params`,
  :func:`shard_state`, :func:`batch_mesh`, :func:`replicate`;
* weights: :data:`WEIGHT_FORMATS`, :class:`QuantizedLinear`, :func:`quantize_params`,
  :class:`NativeKernelError` (int8 weights and their CPU kernel, see :mod:`decoders.quantize`);
* start-up: :func:`enable_compilation_cache` (JAX's on-disk compilation cache, see
  :mod:`decoders.compilation_cache`).
"""

from decoders.api import generate, resolve_judge
from decoders.batch import Prepared, collect, prepare
from decoders.compilation_cache import enable_compilation_cache
from decoders.config import DecodeConfig, ModelConfig
from decoders.linear import QuantizedLinear
from decoders.loading import Model, load_model
from decoders.model import KVCache, Params, init_params
from decoders.native import NativeKernelError
from decoders.options import DecodeOptions
from decoders.paths import bundled_model_path, cache_root
from decoders.plain import generate_plain
from decoders.quantize import WEIGHT_FORMATS, quantize_params
from decoders.sampling import SamplingConfig, row_keys, sample
from decoders.sharding import batch_mesh, make_mesh, replicate, shard_params, shard_state
from decoders.shielded import generate_shielded, judge_for
from decoders.state import (
    FINISH_BUDGET,
    FINISH_CACHE_FULL,
    FINISH_EOS,
    FINISH_LENGTH,
    FINISH_REASONS,
    FINISH_REFUSED,
    RUNNING,
    DecodeState,
    Snapshot,
    append,
    finish,
    init_state,
    rewind,
    snapshot,
)
from decoders.step import advance, decode_logits, decode_loop, plain_step, prefill, run
from decoders.tokenizer import Tokenizer
from shield.result import GenerationResult, GenerationStats

__all__ = [
    "FINISH_BUDGET",
    "FINISH_CACHE_FULL",
    "FINISH_EOS",
    "FINISH_LENGTH",
    "FINISH_REASONS",
    "FINISH_REFUSED",
    "RUNNING",
    "WEIGHT_FORMATS",
    "DecodeConfig",
    "DecodeOptions",
    "DecodeState",
    "GenerationResult",
    "GenerationStats",
    "KVCache",
    "Model",
    "ModelConfig",
    "NativeKernelError",
    "Params",
    "Prepared",
    "QuantizedLinear",
    "SamplingConfig",
    "Snapshot",
    "Tokenizer",
    "advance",
    "append",
    "batch_mesh",
    "bundled_model_path",
    "cache_root",
    "collect",
    "decode_logits",
    "decode_loop",
    "enable_compilation_cache",
    "finish",
    "generate",
    "generate_plain",
    "generate_shielded",
    "init_params",
    "init_state",
    "judge_for",
    "load_model",
    "make_mesh",
    "plain_step",
    "prefill",
    "prepare",
    "quantize_params",
    "replicate",
    "resolve_judge",
    "rewind",
    "row_keys",
    "run",
    "sample",
    "shard_params",
    "shard_state",
    "snapshot",
]
