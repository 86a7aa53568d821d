"""Loading on tiny files: a GGUF written with the ``gguf`` package in every supported tensor type
(with llama.cpp's Q/K permutation), a Hugging Face directory, the disk cache, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

import decoders.weights
from decoders.loading import Model, load_model
from decoders.quantize import quantize_params, weight_format
from decoders.sources import unpermute_qk
from decoders.tokenizer import Tokenizer
from decoders.weights import expected_shapes, named_from_params
from shield.errors import ModelLoadError
from tests.decoders.conftest import TEMPLATE, tiny_vocabulary

Q = gguf.GGMLQuantizationType
#: The tensor type written for each kind of tensor, so every supported type is exercised.
TYPES = {
    "token_embd": Q.Q8_0,
    "attn_q": Q.Q4_0,
    "attn_k": Q.Q4_1,
    "attn_v": Q.F16,
    "ffn_up": Q.Q8_0,
}


def named_arrays(model: Model) -> dict[str, np.ndarray]:
    """The tiny model's weights under Hugging Face names and layouts."""
    return named_from_params(model.config, jax.device_get(model.params))


def permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's conversion-time permutation (the inverse of ``unpermute_qk``)."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf(path: Path, model: Model) -> dict[str, np.ndarray]:
    """Write the tiny model as GGUF; return the HF-named weights the loader must reproduce."""
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(c.num_layers)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_heads)
    writer.add_head_count_kv(c.num_kv_heads)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_context_length(c.max_position)
    tokens, merges, types = tiny_vocabulary()
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(types)
    writer.add_eos_token_id(2)
    writer.add_bos_token_id(1)
    writer.add_chat_template(TEMPLATE)
    expected = {}
    hf_to_gguf = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, value in named_arrays(model).items():
        if name.startswith("model.layers."):
            _, _, layer, *rest = name.split(".")
            kind = hf_to_gguf[".".join(rest[:-1])]
            gname = f"blk.{layer}.{kind}.weight"
        else:
            kind = {
                "model.embed_tokens.weight": "token_embd",
                "model.norm.weight": "output_norm",
            }.get(name, "output")
            gname = f"{kind}.weight"
        stored = value
        if kind == "attn_q":
            stored = permute(value, c.num_heads)
        elif kind == "attn_k":
            stored = permute(value, c.num_kv_heads)
        qtype = TYPES.get(kind, Q.F32) if value.ndim == 2 else Q.F32
        if qtype == Q.F32:
            writer.add_tensor(gname, stored.astype(np.float32))
            roundtrip = stored.astype(np.float32)
        elif qtype == Q.F16:
            writer.add_tensor(gname, stored.astype(np.float16))
            roundtrip = stored.astype(np.float16).astype(np.float32)
        else:
            packed = gguf.quants.quantize(stored.astype(np.float32), qtype)
            writer.add_tensor(gname, packed, raw_dtype=qtype)
            roundtrip = gguf.quants.dequantize(packed, qtype)
        if kind in ("attn_q", "attn_k"):
            heads = c.num_heads if kind == "attn_q" else c.num_kv_heads
            roundtrip = unpermute_qk(roundtrip, heads)
        expected[name] = roundtrip
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def test_gguf_loads_every_type_and_undoes_the_permutation(
    tmp_path: Path, tiny_model: Model
) -> None:
    path = tmp_path / "tiny.gguf"
    expected = write_gguf(path, tiny_model)
    model, tokenizer = load_model(path, use_cache=False)
    assert model.config.num_heads == 4 and model.config.num_kv_heads == 2
    assert not model.config.tie_embeddings and model.config.eos_token_ids == (2, 0)
    loaded = named_arrays(model)
    for name, value in expected.items():
        np.testing.assert_allclose(loaded[name], value, rtol=1e-6, atol=1e-6, err_msg=name)
    original = named_arrays(tiny_model)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert np.abs(loaded[q] - original[q]).max() < 0.2  # Q4_0 error, in the right layout
    assert tokenizer.decode(tokenizer.encode("the cat")) == "the cat"
    assert tokenizer.default_system_prompt == "You are tiny."


def test_cache_makes_the_second_load_read_the_entry(
    tmp_path: Path, tiny_model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tiny.gguf"
    write_gguf(path, tiny_model)
    monkeypatch.setenv("SHIELD_CACHE_DIR", str(tmp_path / "cache"))
    first, _ = load_model(path)
    entries = list((tmp_path / "cache" / "models").iterdir())
    assert len(entries) == 1 and (entries[0] / "weights.npz").is_file()
    mapped: list[dict[str, np.ndarray]] = []
    real_map = decoders.weights.map_npz
    monkeypatch.setattr(
        decoders.weights, "map_npz", lambda p: mapped.append(real_map(p)) or mapped[-1]
    )
    second, _ = load_model(path)
    assert len(mapped) == 1  # the scenario: the second load read the entry
    for one, other in zip(
        jax.tree.leaves(first.params), jax.tree.leaves(second.params), strict=True
    ):
        np.testing.assert_array_equal(one, other)
    # Stored in the device layout and aligned, the entry's pages are the device's arrays: no copy.
    stored = mapped[0]["layers.1.wqkv"]
    assert second.params.layers[1].wqkv.unsafe_buffer_pointer() == stored.ctypes.data
    assert second.params.embed.unsafe_buffer_pointer() == mapped[0]["embed"].ctypes.data
    int8_cached, _ = load_model(path, weights="int8")  # the checkpoint views of the same entry
    int8_fresh, _ = load_model(path, weights="int8", use_cache=False)
    for one, other in zip(
        jax.tree.leaves(int8_cached.params), jax.tree.leaves(int8_fresh.params), strict=True
    ):
        np.testing.assert_array_equal(one, other)
    del second, stored, int8_cached  # nothing may map the file we damage below
    mapped.clear()
    (entries[0] / "weights.npz").write_bytes(b"corrupt")  # a broken entry is rebuilt
    third, _ = load_model(path)
    np.testing.assert_array_equal(first.params.embed, third.params.embed)


def write_hf_directory(directory: Path, model: Model, tokenizer: Tokenizer) -> None:
    c = model.config
    directory.mkdir()
    config = {
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "rope_theta": c.rope_theta,
        "rms_norm_eps": c.rms_norm_eps,
        "tie_word_embeddings": c.tie_embeddings,
        "eos_token_id": 2,
    }
    (directory / "config.json").write_text(json.dumps(config))
    save_file(named_arrays(model), str(directory / "model.safetensors"))
    (directory / "tokenizer.json").write_text(tokenizer.tokenizer_json)
    (directory / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))


def test_hugging_face_directory_loads_exactly(
    tmp_path: Path, tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    write_hf_directory(tmp_path / "hf", tiny_model, tiny_tokenizer)
    model, tokenizer = load_model(tmp_path / "hf", use_cache=False)
    for name, value in named_arrays(tiny_model).items():
        np.testing.assert_array_equal(named_arrays(model)[name], value, err_msg=name)
    assert tokenizer.encode("hello") == tiny_tokenizer.encode("hello")
    assert tokenizer.chat_template == TEMPLATE


def test_int8_load_equals_quantising_the_dense_load(
    tmp_path: Path, tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    """load_model(weights="int8") quantises from the file's arrays: the same values as
    quantize_params over the dense load."""
    write_hf_directory(tmp_path / "hf", tiny_model, tiny_tokenizer)
    dense, _ = load_model(tmp_path / "hf", use_cache=False)
    small, _ = load_model(tmp_path / "hf", weights="int8", use_cache=False)
    assert weight_format(small.params) == "int8" and small.config == dense.config
    expected = jax.tree.leaves(quantize_params(dense.params))
    got = jax.tree.leaves(small.params)
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_missing_and_corrupt_files_name_the_file(
    tmp_path: Path, tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.gguf"):
        load_model(tmp_path / "nope.gguf", use_cache=False)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 12 + b"garbage" * 10)
    with pytest.raises(ModelLoadError, match=r"bad\.gguf"):
        load_model(bad, use_cache=False)
    write_hf_directory(tmp_path / "hf", tiny_model, tiny_tokenizer)
    (tmp_path / "hf" / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json"):
        load_model(tmp_path / "hf", use_cache=False)
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        load_model(tmp_path / "hf", use_cache=False)


def test_shapes_are_checked(tmp_path: Path, tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    write_hf_directory(tmp_path / "hf", tiny_model, tiny_tokenizer)
    named = named_arrays(tiny_model)
    named["model.layers.1.mlp.up_proj.weight"] = named["model.layers.1.mlp.up_proj.weight"][:, :5]
    save_file(named, str(tmp_path / "hf" / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="up_proj"):
        load_model(tmp_path / "hf", use_cache=False)
    assert "lm_head.weight" in expected_shapes(tiny_model.config)
