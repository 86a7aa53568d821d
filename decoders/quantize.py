"""Weight formats of a loaded model: dense, or int8 rows with per-row scales.

:func:`quantize_params` turns every projection and the embedding table of dense
:class:`decoders.model.Params` into :class:`decoders.linear.QuantizedLinear` (norms stay
float32, as do biases). Decoding reads each weight once per step, so on a CPU, where that read is the cost of a
batch-1 step, int8 weights decode faster; the price is a rounding of each weight to one of 255
levels of its row, measured against the dense model in ``tests/decoders/test_real_quantized.py``.

Example:
    >>> small = quantize_params(model.params)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from decoders.gguf_linear import BlockLinear
from decoders.linear import Linear, QuantizedLinear, quantize_linear
from decoders.model import LayerParams, Params
from decoders.native import require_kernel
from shield.errors import DecoderError

__all__ = ["WEIGHT_FORMATS", "quantize_params", "weight_format"]

#: The accepted values of ``load_model(weights=...)`` ("gguf": :mod:`decoders.gguf_model`).
WEIGHT_FORMATS: tuple[str, ...] = ("dense", "int8", "gguf")


def quantize_params(params: Params) -> Params:
    """Quantise the projections and embeddings of dense parameters to int8 rows.

    On a CPU backend this also builds and registers the native kernel the quantised products
    run in (:func:`decoders.native.register_kernels`), so a missing compiler is reported here,
    not at the first step.

    Args:
        params: dense parameters (float32 or bfloat16).

    Returns:
        Parameters whose projections, embedding table and head are :class:`QuantizedLinear`.

    Raises:
        DecoderError: ``params`` is already quantised.
        decoders.native.NativeKernelError: on a CPU, the kernel cannot be built or loaded.
    """
    require_kernel()

    def quantize(weight: Linear) -> QuantizedLinear:
        if isinstance(weight, QuantizedLinear | BlockLinear):
            raise DecoderError(
                "quantize_params: the parameters are already quantised (int8 or GGUF blocks)."
            )
        return quantize_linear(jax.device_get(weight))

    def layer(block: LayerParams) -> LayerParams:
        # Norms and biases stay as they are; only the four projections change.
        return dataclasses.replace(
            block,
            wqkv=quantize(block.wqkv),
            wo=quantize(block.wo),
            w_gate_up=quantize(block.w_gate_up),
            w_down=quantize(block.w_down),
        )

    layers = tuple(layer(block) for block in params.layers)
    embed = params.embed
    return Params(
        # Embedding rows [V, H] are already the head's [out, in] layout.
        embed=quantize(embed.T if isinstance(embed, jax.Array) else embed),
        layers=layers,
        final_norm=params.final_norm,
        lm_head=None if params.lm_head is None else quantize(params.lm_head),
    )


def weight_format(params: Any) -> str:
    """``"int8"`` or ``"gguf"`` when the parameters' projections are quantised, else ``"dense"``."""
    wqkv = params.layers[0].wqkv
    if isinstance(wqkv, BlockLinear):
        return "gguf"
    return "int8" if isinstance(wqkv, QuantizedLinear) else "dense"
