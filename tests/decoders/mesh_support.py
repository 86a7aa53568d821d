"""Decodes on a device mesh, run in subprocesses that own their devices (``test_mesh.py``,
``test_multihost.py``).

Each run decodes the same batch on one device and on a mesh and returns both results as JSON, so
the test process compares them. The batch is decoded plainly and shielded (``backtrack``) by a
spec made of text the model itself writes (two bytes from the middle of each greedy answer), so
the shielded run certainly rolls back; the counts of rollbacks come back with the tokens.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from types import SimpleNamespace
from typing import Any

import jax

import shield
from decoders.api import generate
from decoders.config import ModelConfig
from decoders.loading import Model
from decoders.model import init_params
from decoders.plain import generate_plain
from decoders.quantize import quantize_params
from decoders.sharding import make_mesh
from decoders.shielded import judge_for
from decoders.tokenizer import Tokenizer, tokenizer_json_from_gguf
from shield.policy import BacktrackPolicy
from shield.result import GenerationResult
from shield.rules import LiteralRule
from tests.decoders.conftest import TEMPLATE, tiny_vocabulary

__all__ = ["MESHES", "PROMPTS", "decode_all", "tiny"]

#: Eight prompts: one row per device of the largest mesh.
PROMPTS = (
    "the cat sat",
    "hello there",
    "or the",
    "hello world, my old friend",
    "the the the",
    "a",
    "well",
    "the cat",
)
#: (data, model) shapes of the 8-device meshes: 4 model shards do not divide the 2 key/value
#: heads (cache replicated along ``model``), 2 do (cache heads split).
MESHES = ((2, 4), (4, 2), (1, 8))
#: The meshes int8 weights are decoded on.
INT8_MESHES = ((1, 8),)
MAX_NEW = 12


def tiny(heads: int = 4, kv_heads: int = 2) -> tuple[Model, Tokenizer]:
    """The tiny random model and tokenizer of ``tests/decoders/conftest.py`` (same seed)."""
    tokens, merges, types = tiny_vocabulary()
    tokenizer = Tokenizer(
        tokenizer_json_from_gguf(tokens, merges, types),
        eos_token_ids=(2, 0),
        chat_template=TEMPLATE,
    )
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=8,
        rope_theta=1000.0,
        tie_embeddings=False,
        eos_token_ids=(2, 0),
    )
    params = init_params(config, jax.random.key(7), scale=0.3)
    return Model(config=config, params=params, source="tiny"), tokenizer


def _rows(results: list[GenerationResult]) -> list[dict[str, Any]]:
    return [
        {"tokens": list(r.tokens), "rollbacks": r.stats.rollbacks, "reason": r.finish_reason}
        for r in results
    ]


def _judge(model: Model, tokenizer: Tokenizer) -> Any:
    """A spec that the model's own greedy answers violate."""
    rules = []
    for index, result in enumerate(
        generate_plain(model, tokenizer, PROMPTS, max_new_tokens=MAX_NEW, temperature=0.0)
    ):
        data = b"".join(tokenizer.token_bytes[t] for t in result.tokens)
        middle = data[len(data) // 3 : len(data) // 3 + 2]
        if len(middle) == 2 and middle.isascii():
            rules.append(LiteralRule(id=f"own-{index}", literal=middle.decode()))
    policy = BacktrackPolicy(checkpoint="token", max_rollback_tokens=6, max_retries=2)
    spec = SimpleNamespace(name="own", rules=tuple(rules), policy=policy)
    return judge_for(shield.compile(spec), tokenizer)


def decode_all(mesh: Any, model: Model, tokenizer: Tokenizer) -> dict[str, Any]:
    """Plain (sampled) and shielded (greedy backtrack) results of :data:`PROMPTS` on ``mesh``,
    through :func:`decoders.generate` (its ``mesh`` argument)."""
    judge = _judge(model, tokenizer)
    plain = generate(
        model, tokenizer, PROMPTS, max_new_tokens=MAX_NEW, seed=list(range(8)), mesh=mesh
    )
    shielded = generate(
        model, tokenizer, PROMPTS, spec=judge, strategy="backtrack", max_new_tokens=MAX_NEW,
        temperature=0.0, mesh=mesh,
    )  # fmt: skip
    return {"plain": _rows(plain), "shielded": _rows(shielded)}


def multihost(process_id: int, processes: int, port: int) -> None:
    """One process of a multi-process run (``jax.distributed`` over localhost); the first one
    prints the results of the sharded batch as JSON.

    The mesh has every device of every process: ``data`` within a process, ``model`` across
    the processes (see :func:`decoders.sharding.make_mesh`).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=processes,
        process_id=process_id,
        initialization_timeout=120,
    )
    try:
        local = jax.local_device_count()
        model, tokenizer = tiny()
        mesh = make_mesh(data=local, model=jax.device_count() // local)
        found = decode_all(mesh, model, tokenizer)
        if process_id == 0:
            report = {"devices": jax.device_count(), "processes": jax.process_count()}
            print(json.dumps({**report, "mesh": dict(mesh.shape), "runs": found}), flush=True)
    finally:
        jax.distributed.shutdown()


def main(argv: list[str]) -> None:
    """``python -m tests.decoders.mesh_support FORMAT...``: print one JSON object of every run
    (``{"devices": n, "runs": {format: {"single" | "DATAxMODEL": results}}}``);
    ``... multihost PROCESS_ID PROCESSES PORT``: one process of a multi-process run."""
    if argv[0] == "multihost":
        multihost(int(argv[1]), int(argv[2]), int(argv[3]))
        return
    dense, tokenizer = tiny()
    runs: dict[str, dict[str, Any]] = {}
    for weights in argv:
        model = dense
        if weights == "int8":
            model = dataclasses.replace(dense, params=quantize_params(dense.params))
        found = runs[weights] = {"single": decode_all(None, model, tokenizer)}
        # int8 on the pure tensor-parallel mesh only: each mesh compiles every loop again.
        for data, width in MESHES if weights == "dense" else INT8_MESHES:
            mesh = make_mesh(data=data, model=width)
            found[f"{data}x{width}"] = decode_all(mesh, model, tokenizer)
    print(json.dumps({"devices": jax.device_count(), "runs": runs}))


if __name__ == "__main__":
    main(sys.argv[1:])
