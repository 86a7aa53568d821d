"""``load_model(weights="gguf")`` on tiny GGUF files written here: every supported format in one
model (K-quant blocks built bytewise), q/k un-permuted by whole rows, weights equal to the dense
load of the same file bit for bit, logits equal within float32 rounding; unsupported types,
meshes and directories refused by name; the header parser agrees with the gguf package."""

from __future__ import annotations

from pathlib import Path

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoders.gguf_file import open_gguf
from decoders.gguf_linear import BlockLinear, dense_rows
from decoders.gguf_model import DEFAULT_ACTIVATIONS
from decoders.loading import Model, load_model
from decoders.model import forward, init_cache, logits
from decoders.quantize import weight_format
from decoders.sharding import make_mesh
from shield.errors import DecoderError, ModelLoadError
from tests.decoders.conftest import TEMPLATE, tiny_vocabulary
from tests.decoders.test_gguf_formats import random_blocks

Q = gguf.GGMLQuantizationType
HIDDEN, INNER, HEADS, KV_HEADS, HEAD_DIM, LAYERS = 256, 512, 4, 2, 64, 2
#: Each projection's format: q and k share one part, v (another format) is a second one.
TYPES = {
    "attn_q": "Q4_K",
    "attn_k": "Q4_K",
    "attn_v": "Q6_K",
    "attn_output": "Q4_0",
    "ffn_gate": "Q4_1",
    "ffn_up": "Q8_0",
    "ffn_down": "Q6_K",
    "token_embd": "Q8_0",
    "output": "Q4_K",
}


def _shapes(vocab: int) -> dict[str, tuple[int, int]]:
    return {
        "attn_q": (HEADS * HEAD_DIM, HIDDEN),
        "attn_k": (KV_HEADS * HEAD_DIM, HIDDEN),
        "attn_v": (KV_HEADS * HEAD_DIM, HIDDEN),
        "attn_output": (HIDDEN, HEADS * HEAD_DIM),
        "ffn_gate": (INNER, HIDDEN),
        "ffn_up": (INNER, HIDDEN),
        "ffn_down": (HIDDEN, INNER),
        "token_embd": (vocab, HIDDEN),
        "output": (vocab, HIDDEN),
    }


def write_block_gguf(path: Path, types: dict[str, str] = TYPES) -> None:
    """A 2-layer llama GGUF whose matrices are random blocks of ``types``, norms float32."""
    tokens, merges, token_types = tiny_vocabulary()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(INNER)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_context_length(128)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(token_types)
    writer.add_eos_token_id(2)
    writer.add_chat_template(TEMPLATE)
    rng = np.random.default_rng(0)
    seed = iter(range(1000))

    def matrix(name: str, kind: str) -> None:
        rows, width = _shapes(len(tokens))[kind]
        fmt = types[kind]
        block_weights, block_bytes = gguf.GGML_QUANT_SIZES[Q[fmt]]
        if fmt in ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"):
            packed = random_blocks(fmt, rows, width // block_weights, seed=next(seed))
        else:  # any other format: random bytes of the right size (never decoded)
            packed = rng.integers(0, 256, (rows, width // block_weights * block_bytes), np.uint8)
        writer.add_tensor(name, packed, raw_dtype=Q[fmt])

    matrix("token_embd.weight", "token_embd")
    for layer in range(LAYERS):
        for norm in ("attn_norm", "ffn_norm"):
            weight = (1.0 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
            writer.add_tensor(f"blk.{layer}.{norm}.weight", weight)
        for kind in TYPES:
            if kind not in ("token_embd", "output"):
                matrix(f"blk.{layer}.{kind}.weight", kind)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    matrix("output.weight", "output")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def block_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "blocks.gguf"
    write_block_gguf(path)
    return path


@pytest.fixture(scope="module")
def both(block_file: Path) -> tuple[Model, Model]:
    blocks, _ = load_model(block_file, weights="gguf", activations="float32")  # the exact path
    dense, _ = load_model(block_file, weights="dense", use_cache=False)
    return blocks, dense


def test_the_header_parser_agrees_with_the_gguf_package(block_file: Path) -> None:
    ours = open_gguf(block_file)
    reader = gguf.GGUFReader(str(block_file))
    assert len(ours.tensors) == len(reader.tensors) == 2 + LAYERS * 9 + 1
    for tensor in reader.tensors:
        mine = ours.tensors[tensor.name]
        assert mine.type_name == tensor.tensor_type.name
        np.testing.assert_array_equal(np.asarray(mine.data), np.asarray(tensor.data))
    assert list(ours.metadata["tokenizer.ggml.tokens"]) == tiny_vocabulary()[0]
    assert ours.metadata["llama.embedding_length"] == HIDDEN


def test_block_weights_are_the_dense_loads_weights_bit_for_bit(both: tuple[Model, Model]) -> None:
    blocks, dense = both
    assert weight_format(blocks.params) == "gguf" and weight_format(dense.params) == "dense"
    assert blocks.config == dense.config
    wqkv = blocks.params.layers[0].wqkv
    assert isinstance(wqkv, BlockLinear) and wqkv.formats == ("Q4_K", "Q6_K")  # two parts
    for got, expected in [
        (blocks.params.layers[1].wqkv, dense.params.layers[1].wqkv),  # un-permuted q and k
        (blocks.params.layers[1].w_gate_up, dense.params.layers[1].w_gate_up),
        (blocks.params.layers[0].w_down, dense.params.layers[0].w_down),
        (blocks.params.lm_head, dense.params.lm_head),
    ]:
        assert isinstance(got, BlockLinear)
        np.testing.assert_array_equal(np.asarray(dense_rows(got)), np.asarray(expected).T)
    embed = blocks.params.embed
    assert isinstance(embed, BlockLinear)
    np.testing.assert_array_equal(np.asarray(dense_rows(embed)), np.asarray(dense.params.embed))


def test_block_logits_equal_dense_logits_within_float32_rounding(
    both: tuple[Model, Model],
) -> None:
    tokens = jnp.asarray([[5, 77, 200, 3], [9, 9, 130, 64]], jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(4, dtype=jnp.int32), (2, 4))

    def run(model: Model) -> np.ndarray:
        cache = init_cache(model.config, 2, 8)
        hidden, _ = forward(model.params, model.config, cache, tokens, positions, 8)
        return np.asarray(logits(model.params, model.config, hidden))

    got, expected = run(both[0]), run(both[1])
    scale = np.abs(expected).max()
    assert scale > 1.0  # the scenario: real signal, not all zeros
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale, rtol=0)


def test_the_default_quantises_activations_and_stays_near_the_exact_logits(
    block_file: Path, both: tuple[Model, Model]
) -> None:
    """Every block map takes DEFAULT_ACTIVATIONS; the tiny model's logits move by the 8-bit
    rounding of its activations (here under 2% of the logits' scale), no more."""
    quantised, _ = load_model(block_file, weights="gguf")
    maps = [
        leaf for leaf in jax.tree.leaves(quantised.params, is_leaf=_is_block) if _is_block(leaf)
    ]
    assert len(maps) == 2 + LAYERS * 4 and {m.activations for m in maps} == {DEFAULT_ACTIVATIONS}
    tokens = jnp.asarray([[5, 77, 200, 3]], jnp.int32)
    positions = jnp.arange(4, dtype=jnp.int32)[None]

    def run(model: Model) -> np.ndarray:
        cache = init_cache(model.config, 1, 8)
        hidden, _ = forward(model.params, model.config, cache, tokens, positions, 8)
        return np.asarray(logits(model.params, model.config, hidden))

    got, exact = run(quantised), run(both[0])
    scale = np.abs(exact).max()
    assert DEFAULT_ACTIVATIONS == "int8" and not np.array_equal(got, exact)  # it quantised
    np.testing.assert_allclose(got, exact, atol=2e-2 * scale, rtol=0)


def _is_block(node: object) -> bool:
    return isinstance(node, BlockLinear)


def test_an_unsupported_type_is_refused_by_tensor_and_type(tmp_path: Path) -> None:
    path = tmp_path / "q5k.gguf"
    write_block_gguf(path, {**TYPES, "ffn_down": "Q5_K"})
    with pytest.raises(ModelLoadError, match=r"blk\.0\.ffn_down\.weight.*Q5_K"):
        load_model(path, weights="gguf")


def test_gguf_weights_need_a_gguf_file_on_one_device(block_file: Path, tmp_path: Path) -> None:
    with pytest.raises(DecoderError, match="mesh"):
        load_model(block_file, weights="gguf", mesh=make_mesh(data=1, model=1))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DecoderError, match=r"weights='gguf' needs a \.gguf file"):
        load_model(tmp_path, weights="gguf")


def test_the_tokenizer_is_the_files_and_is_cached(block_file: Path) -> None:
    _, first = load_model(block_file, weights="gguf")
    _, second = load_model(block_file, weights="gguf")  # from the tokenizer cache
    assert first.encode("the cat") == second.encode("the cat")
    assert second.decode(second.encode("the cat")) == "the cat"
    assert second.default_system_prompt == "You are tiny."
