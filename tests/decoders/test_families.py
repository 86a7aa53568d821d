"""Every supported family against transformers itself, on tiny random checkpoints it writes.

Per family (:data:`tests.decoders.family_support.FAMILIES`), one checkpoint directory is written by
transformers and loaded by ``decoders.load_model``; the reference is the same directory loaded by
transformers (eager attention, float32). Checked: logits over a 64-token prompt within 1e-4, and
the feature that makes the family differ moves them (so the comparison could fail); 32 greedy
tokens equal up to the first near-tie; a rewind followed by decoding gives the logits of a fresh
prefill of the kept prefix (Hypothesis); a batch of prompts of different lengths gives each row's
single-row logits. Unsupported configurations are refused with the key and value named.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.config import DecodeConfig, ModelConfig
from decoders.families import config_from_hf
from decoders.loading import Model, load_model
from decoders.model import Params, forward, init_cache, logits
from decoders.rope import RopeScaling
from decoders.state import DecodeState, append, init_state, rewind
from decoders.step import decode_logits, prefill
from shield.errors import ModelLoadError
from tests.decoders.family_support import FAMILIES, hf_config, write_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPT = 64  # tokens of the parity prompt
GREEDY = 32  # greedy tokens compared
SLOTS = 128  # cache slots (and the static attention window) of every decode here
PARITY = 1e-4  # logits tolerance against transformers (float32)
REWIND = 2e-5  # logits tolerance between two orders of computing the same prefix
NEAR_TIE = 1e-4  # top-2 margin under which greedy choices may differ
PREFILL_WIDTH, FORCE_WIDTH = 64, 16  # padded widths, one compilation each


@dataclasses.dataclass(frozen=True)
class Case:
    family: str
    directory: Path
    model: Model
    reference: Any  # the transformers model
    prompt: np.ndarray  # [PROMPT] int


_CASES: dict[str, Case] = {}


@pytest.fixture(scope="module", params=FAMILIES)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    family = request.param
    if family not in _CASES:
        directory = write_checkpoint(family, tmp_path_factory.mktemp(family))
        model, _ = load_model(directory, use_cache=False)
        reference = transformers.AutoModelForCausalLM.from_pretrained(
            directory, attn_implementation="eager", dtype=torch.float32
        ).eval()
        prompt = np.random.default_rng(1).integers(3, model.config.vocab_size, PROMPT)
        _CASES[family] = Case(family, directory, model, reference, prompt)
    return _CASES[family]


def reference_logits(case: Case, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return case.reference(torch.tensor(tokens[None], dtype=torch.long)).logits[0].numpy()


@functools.partial(jax.jit, static_argnames=("config",))
def _all_logits(params: Params, config: ModelConfig, tokens: jax.Array) -> jax.Array:
    t = tokens.shape[1]
    positions = jnp.arange(t, dtype=jnp.int32)[None]
    hidden, _ = forward(params, config, init_cache(config, 1, t), tokens, positions, t)
    return logits(params, config, hidden)


def our_logits(config: ModelConfig, params: Params, tokens: np.ndarray) -> np.ndarray:
    """Logits at every position of one prompt (the computation a prefill does)."""
    return np.asarray(_all_logits(params, config, jnp.asarray(tokens[None], jnp.int32)))[0]


def without_layer_field(params: Params, *fields: str) -> Params:
    layers = tuple(dataclasses.replace(layer, **dict.fromkeys(fields)) for layer in params.layers)
    return dataclasses.replace(params, layers=layers)


# The feature that makes each family differ from plain Llama, turned off.
ABLATIONS: dict[str, Callable[[ModelConfig, Params], tuple[ModelConfig, Params]]] = {
    "llama": lambda c, p: (dataclasses.replace(c, rope_theta=c.rope_theta * 2), p),
    "llama3_rope": lambda c, p: (dataclasses.replace(c, rope_scaling=RopeScaling()), p),
    "qwen2": lambda c, p: (c, without_layer_field(p, "bqkv")),
    "qwen3": lambda c, p: (c, without_layer_field(p, "q_norm", "k_norm")),
    "mistral_sliding": lambda c, p: (dataclasses.replace(c, layer_windows=()), p),
    "gemma2": lambda c, p: (dataclasses.replace(c, attn_softcap=None, final_softcap=None), p),
    "gemma3": lambda c, p: (dataclasses.replace(c, sliding_rope_theta=None), p),
    "phi3": lambda c, p: (dataclasses.replace(c, layer_windows=()), p),
}


def test_logits_match_transformers(case: Case) -> None:
    config = case.model.config
    windows = [w for w in config.layer_windows if w is not None]
    assert not windows or 2 * max(windows) < PROMPT  # the prompt crosses every window
    want = reference_logits(case, case.prompt)
    got = our_logits(config, case.model.params, case.prompt)
    ablated = our_logits(*ABLATIONS[case.family](config, case.model.params), case.prompt)
    assert np.abs(ablated - want).max() > 100 * PARITY  # the family's feature matters here
    assert np.abs(got - want).max() <= PARITY


def greedy_ours(model: Model, prompt: np.ndarray, steps: int) -> list[int]:
    state = fresh(model, [prompt])
    chosen = []
    for _ in range(steps):
        scores, state = decode_logits(model.params, model.config, state, window=SLOTS)
        token = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        state = append(state, token)
        chosen.append(int(token[0]))
    return chosen


def test_greedy_tokens_match_transformers_up_to_a_near_tie(case: Case) -> None:
    want, margins = [], []
    with torch.no_grad():  # transformers' own incremental decoding, its KV cache included
        out = case.reference(torch.tensor(case.prompt[None, :16]), use_cache=True)
        for _ in range(GREEDY):
            scores = out.logits[0, -1].numpy()
            second, best = np.sort(scores)[-2:]
            margins.append(best - second)
            want.append(int(np.argmax(scores)))
            out = case.reference(torch.tensor([[want[-1]]]), cache=out.cache, use_cache=True)
    ties = [i for i, margin in enumerate(margins) if margin < NEAR_TIE]
    agree = ties[0] if ties else GREEDY
    assert agree >= GREEDY // 2  # most of the run is compared
    got = greedy_ours(case.model, case.prompt[:16], GREEDY)
    assert got[:agree] == want[:agree]


def fresh(model: Model, prompts: list[np.ndarray]) -> DecodeState:
    """A state with ``prompts`` prefilled (padded to one width, so one compilation)."""
    tokens = np.zeros((len(prompts), PREFILL_WIDTH), np.int32)
    for row, prompt in enumerate(prompts):
        tokens[row, : len(prompt)] = prompt
    lengths = jnp.asarray([len(p) for p in prompts], jnp.int32)
    state = init_state(model.config, DecodeConfig(batch_size=len(prompts), max_slots=SLOTS))
    return prefill(model.params, model.config, state, jnp.asarray(tokens), lengths, window=SLOTS)


def force(model: Model, state: DecodeState, text: list[int]) -> DecodeState:
    tokens = np.zeros((1, FORCE_WIDTH), np.int32)
    tokens[0, : len(text)] = text
    lengths = jnp.asarray([len(text)], jnp.int32)
    return prefill(model.params, model.config, state, jnp.asarray(tokens), lengths, window=SLOTS)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(data=st.data())
def test_rewind_then_decode_equals_a_fresh_prefill_of_the_kept_prefix(
    case: Case, data: st.DataObject
) -> None:
    model, vocab = case.model, case.model.config.vocab_size
    token = st.integers(3, vocab - 1)
    prompt = data.draw(st.lists(token, min_size=1, max_size=24), "prompt")
    forced = data.draw(st.lists(token, max_size=FORCE_WIDTH), "forced")
    steps = data.draw(st.integers(1, 12), "greedy steps")
    state = fresh(model, [np.array(prompt)])
    if forced:
        state = force(model, state, forced)
    for _ in range(steps):
        scores, state = decode_logits(model.params, model.config, state, window=SLOTS)
        state = append(state, jnp.argmax(scores, axis=-1).astype(jnp.int32))
    cursor = int(state.cursor[0])
    target = data.draw(st.integers(len(prompt), cursor - 1), "rewind to")
    state = rewind(state, jnp.asarray([target], jnp.int32))
    assert int(state.discarded[0]) == cursor - target > 0  # the scenario: tokens were dropped
    kept = [int(t) for t in np.asarray(state.tokens[0, :target])]
    continuation = data.draw(st.lists(token, min_size=1, max_size=8), "continuation")
    state = force(model, state, continuation)
    got, _ = decode_logits(model.params, model.config, state, window=SLOTS)
    again, _ = decode_logits(
        model.params, model.config, fresh(model, [np.array(kept + continuation)]), window=SLOTS
    )
    assert np.abs(np.asarray(got) - np.asarray(again)).max() <= REWIND


def test_a_batch_row_equals_the_row_alone(case: Case) -> None:
    model = case.model
    prompts = [case.prompt[:64], case.prompt[5:30], case.prompt[40:43]]
    batch = fresh(model, prompts)
    together = []
    for _ in range(4):
        scores, batch = decode_logits(model.params, model.config, batch, window=SLOTS)
        together.append(np.asarray(scores))
        batch = append(batch, jnp.argmax(scores, axis=-1).astype(jnp.int32))
    for row, prompt in enumerate(prompts):
        alone = fresh(model, [prompt])
        for step in range(4):
            scores, alone = decode_logits(model.params, model.config, alone, window=SLOTS)
            assert np.abs(np.asarray(scores)[0] - together[step][row]).max() <= REWIND
            alone = append(alone, jnp.argmax(scores, axis=-1).astype(jnp.int32))


# --- configurations refused by name -------------------------------------------------------


def saved_config(family: str, tmp_path: Path) -> dict[str, Any]:
    """The ``config.json`` transformers writes for the tiny ``family``."""
    hf_config(family).save_pretrained(tmp_path)
    values: dict[str, Any] = json.loads((tmp_path / "config.json").read_text())
    return values


def saved_config_values(family: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        return saved_config(family, Path(directory))


REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("llama", {"attention_bias": True}, "attention_bias=True"),
    ("llama", {"mlp_bias": True}, "mlp_bias=True"),
    ("llama", {"num_experts": 8}, "num_experts=8"),
    ("llama", {"model_type": "gpt2"}, "model_type 'gpt2'"),
    ("llama", {"hidden_act": "relu"}, "hidden_act='relu'"),
    ("llama", {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}}, "'longrope'"),
    ("llama", {"rope_parameters": {"rope_type": "default", "mrope_section": [1]}}, "mrope"),
    ("qwen2", {"use_mrope": True}, "use_mrope=True"),
    ("qwen3", {"attention_bias": True}, "attention_bias=True"),
    ("gemma2", {"use_bidirectional_attention": True}, "use_bidirectional_attention=True"),
    ("gemma3", {"layer_types": ["chunked_attention"] * 4}, "layer_types"),
    ("phi3", {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}}, "longrope"),
    ("phi3", {"partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5"),
    ("phi3", {"attention_bias": True}, "attention_bias=True"),
    ("mistral_sliding", {"mlp_bias": True}, "mlp_bias=True"),
    ("mistral_sliding", {"quantization_config": {"bits": 4}}, "quantization_config"),
]


@pytest.mark.parametrize(("family", "change", "named"), REFUSALS)
def test_unsupported_keys_are_refused_by_name(
    tmp_path: Path, family: str, change: dict[str, Any], named: str
) -> None:
    values = saved_config(family, tmp_path)
    config_from_hf(values, tmp_path / "config.json")  # the unchanged file is accepted
    values.update(change)
    with pytest.raises(ModelLoadError, match=r"config\.json") as refused:
        config_from_hf(values, tmp_path / "config.json")
    assert named in str(refused.value)


def test_a_refused_directory_does_not_load(tmp_path: Path) -> None:
    directory = write_checkpoint("llama", tmp_path / "llama")
    values = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**values, "attention_bias": True}))
    with pytest.raises(ModelLoadError, match="attention_bias=True"):
        load_model(directory, use_cache=False)


def test_v4_spellings_read_as_the_v5_ones(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    for family in ("llama3_rope", "gemma3", "qwen2"):
        v5 = saved_config(family, tmp_path)
        v4 = {k: v for k, v in v5.items() if k != "rope_parameters"}
        rope = v5["rope_parameters"]
        if family == "gemma3":  # global theta and scaling, local base, window pattern
            full = dict(rope["full_attention"])
            v4.update(
                rope_theta=full.pop("rope_theta"),
                rope_local_base_freq=rope["sliding_attention"]["rope_theta"],
                rope_scaling={"type": full.pop("rope_type"), **full},
            )
        else:
            scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
            v4.update(rope_theta=rope["rope_theta"], rope_scaling=scaling)
        assert config_from_hf(v4, path) == config_from_hf(v5, path)
    gemma3 = saved_config("gemma3", tmp_path)
    pattern = {k: v for k, v in gemma3.items() if k != "layer_types"}
    pattern["sliding_window_pattern"] = 3  # sliding, sliding, full, sliding
    assert config_from_hf(pattern, path) == config_from_hf(gemma3, path)


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "linear", "factor": 4.0},
        {"rope_type": "dynamic", "factor": 4.0},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
    ],
    ids=lambda r: r["rope_type"],
)
def test_rope_variants_match_transformers(tmp_path: Path, rope: dict[str, Any]) -> None:
    directory = write_checkpoint(
        "llama", tmp_path / "llama", overrides={"rope_parameters": {**rope, "rope_theta": 1e4}}
    )
    model, _ = load_model(directory, use_cache=False)
    assert model.config.rope_scaling.kind == rope["rope_type"]
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        directory, attn_implementation="eager", dtype=torch.float32
    ).eval()
    prompt = np.random.default_rng(2).integers(3, model.config.vocab_size, PROMPT)
    with torch.no_grad():
        want = reference(torch.tensor(prompt[None])).logits[0].numpy()
    assert np.abs(our_logits(model.config, model.params, prompt) - want).max() <= PARITY


def test_cli_generates_from_a_family_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _CASES["gemma3"].directory if "gemma3" in _CASES else None
    directory = directory or write_checkpoint("gemma3", tmp_path / "gemma3")
    from shield.cli import main

    monkeypatch.setenv("SHIELD_CACHE_DIR", str(tmp_path / "cache"))
    code = main(
        ["generate", "--spec", "secrets", "--prompt", "the", "--model", str(directory),
         "--temperature", "0", "--max-new-tokens", "6", "--json", "--no-cache"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= len(result["tokens"]) <= 6


def test_weights_are_converted_one_by_one_and_placed_through_put() -> None:
    import ml_dtypes

    from decoders.model import init_params
    from decoders.weights import named_from_params, params_from_named

    config = config_from_hf(saved_config_values("gemma3"), Path("config.json"))
    config = dataclasses.replace(config, dtype="bfloat16")
    named = {
        name: array.astype(ml_dtypes.bfloat16)
        for name, array in named_from_params(config, init_params(config, jax.random.key(0))).items()
    }
    placed: list[str] = []

    def put(path: str, array: np.ndarray) -> jax.Array:
        assert array.dtype == ml_dtypes.bfloat16  # never widened to float32 on the way
        placed.append(path)
        return jnp.asarray(array)

    params = params_from_named(config, named, "memory", put=put)
    assert {"embed", "final_norm", "layers.0.wqkv", "layers.3.q_norm"} <= set(placed)
    assert "layers.0.post_mlp_norm" in placed and len(placed) == len(set(placed))
    leaves = jax.tree_util.tree_leaves(params)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype("bfloat16")}
    again = named_from_params(config, params)
    assert all(np.array_equal(again[k], named[k].astype(np.float32)) for k in named)


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])
def test_int8_load_equals_quantising_the_dense_load(tmp_path: Path, family: str) -> None:
    from decoders.quantize import quantize_params

    directory = write_checkpoint(family, tmp_path / family)
    dense, _ = load_model(directory, use_cache=False)
    int8, _ = load_model(directory, use_cache=False, weights="int8")
    layer = int8.params.layers[0]
    assert layer.bqkv is not None if family == "qwen2" else layer.post_mlp_norm is not None
    want = jax.tree_util.tree_leaves(quantize_params(dense.params))
    got = jax.tree_util.tree_leaves(int8.params)
    assert len(got) == len(want)
    for ours, theirs in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
