"""llama.cpp's side of ``bench.bench_gguf``, run by the scratch environment's interpreter.

Run (what ``bench_gguf`` does): ``.bench-venv/llama-cpp/bin/python -m bench.llama_cpp_side
--model FILE.gguf --prompt TEXT --long-prompt TEXT``; prints one JSON line of named numbers.

It imports only llama_cpp, numpy and the standard library (the scratch environment has no JAX) and
drives llama.cpp through its C API as llama-cpp-python binds it, the way llama.cpp's own examples
do: greedy decoding is one ``llama_decode`` per step over all sequences of the batch (8 sequences
are 8 sequence ids in one ``llama_batch``) and an argmax of the returned logits; a prefill is one
``llama_decode`` of the whole prompt. Every context uses ``--threads`` threads and llama.cpp's
default context parameters otherwise. Each throughput is the median of ``--repeats`` runs after one
warm-up run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import llama_cpp
import numpy as np

THREADS = "2"  # the protocol: llama.cpp with 2 threads on the 2-core machine
PROBE_STEPS = 8  # decode steps of a thread-count probe
CELLS_ROUND = 256  # context sizes are rounded up to whole multiples of this many cells


def _context(model: Any, cells: int, sequences: int, threads: int, batch: int) -> Any:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = cells
    params.n_batch = params.n_ubatch = batch
    params.n_seq_max = sequences
    params.n_threads = params.n_threads_batch = threads
    context = llama_cpp.llama_init_from_model(model, params)
    if not context:
        raise RuntimeError(f"llama.cpp could not create a context of {cells} cells")
    return context


def _model(path: str) -> Any:
    model = llama_cpp.llama_model_load_from_file(
        path.encode(), llama_cpp.llama_model_default_params()
    )
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    return model


def _tokens(model: Any, text: str) -> list[int]:
    vocab = llama_cpp.llama_model_get_vocab(model)
    data = text.encode()
    room = len(data) + 8  # a byte-level tokenizer yields at most one token per byte, plus BOS
    out = (llama_cpp.llama_token * room)()
    count = llama_cpp.llama_tokenize(vocab, data, len(data), out, room, True, False)
    if count < 0:
        raise RuntimeError(f"llama.cpp tokenisation needs {-count} tokens, room was {room}")
    return list(out[:count])


def _cells(needed: int) -> int:
    return -(-needed // CELLS_ROUND) * CELLS_ROUND


class _Batch:
    """One ``llama_batch`` of at most ``capacity`` tokens, refilled for each call."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, 1)

    def run(self, context: Any, entries: list[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants logits) entries in one call."""
        if len(entries) > self.capacity:
            raise ValueError(f"{len(entries)} tokens in a batch of capacity {self.capacity}")
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, logits) in enumerate(entries):
            batch.token[i], batch.pos[i] = token, position
            batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = 1, sequence, logits
        status = llama_cpp.llama_decode(context, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status} for {len(entries)} tokens")

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.batch)


def _argmax(context: Any, rows: int, vocabulary: int) -> list[int]:
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(context), shape=(rows, vocabulary))
    return [int(i) for i in logits.argmax(axis=1)]


def decode_rate(
    model: Any, ids: list[int], batch: int, new: int, repeats: int, threads: int
) -> float:
    """Greedy tokens per second of ``batch`` sequences of ``ids``, ``new`` tokens each."""
    per_sequence = _cells(len(ids) + new + 1)
    capacity = max(batch * len(ids), batch)
    context = _context(model, per_sequence * batch, batch, threads, capacity)
    vocabulary = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    calls = _Batch(capacity)
    times = []
    try:
        for attempt in range(repeats + 1):  # the first run warms up
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(context), True)
            last = len(ids) - 1
            calls.run(
                context, [(t, p, s, p == last) for s in range(batch) for p, t in enumerate(ids)]
            )
            nexts = _argmax(context, batch, vocabulary)
            began = time.perf_counter()
            for step in range(new):
                calls.run(context, [(t, len(ids) + step, s, True) for s, t in enumerate(nexts)])
                nexts = _argmax(context, batch, vocabulary)
            if attempt:
                times.append(time.perf_counter() - began)
    finally:
        calls.free()
        llama_cpp.llama_free(context)
    return batch * new / statistics.median(times)


def prefill_rate(model: Any, ids: list[int], repeats: int, threads: int) -> float:
    """Prompt tokens per second of one prefill of ``ids`` (one ``llama_decode`` call)."""
    context = _context(model, _cells(len(ids) + 1), 1, threads, len(ids))
    calls = _Batch(len(ids))
    times = []
    try:
        for attempt in range(repeats + 1):
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(context), True)
            entries = [(t, p, 0, p == len(ids) - 1) for p, t in enumerate(ids)]
            began = time.perf_counter()
            calls.run(context, entries)
            if attempt:
                times.append(time.perf_counter() - began)
    finally:
        calls.free()
        llama_cpp.llama_free(context)
    return len(ids) / statistics.median(times)


def load_seconds(path: str, threads: int) -> float:
    """Seconds to load the model and create a default 512-cell context (what ``Llama()`` does)."""
    began = time.perf_counter()
    model = _model(path)
    context = _context(model, 512, 1, threads, 512)
    seconds = time.perf_counter() - began
    llama_cpp.llama_free(context)
    llama_cpp.llama_model_free(model)
    return seconds


def _fastest(choices: list[int], probe: Any) -> int:
    """The thread count whose short ``probe(threads)`` run is fastest (no probe for one choice)."""
    return choices[0] if len(choices) == 1 else max(choices, key=probe)


def measure(args: argparse.Namespace) -> dict[str, float]:
    """All of llama.cpp's numbers for one run of ``bench_gguf``.

    With several ``--threads`` choices, a short probe per workload picks the fastest (llama.cpp's
    OpenMP barriers spin: on a machine busier than its cores, 2 threads can be 10x slower than 1),
    and the numbers record the choice (``*_threads``).
    """
    choices = [int(t) for t in args.threads.split(",")]
    llama_cpp.llama_backend_init()
    out = {"load_cold_s": load_seconds(args.model, choices[0])}  # first load of this process
    out["load_warm_s"] = statistics.median(
        load_seconds(args.model, choices[0]) for _ in range(args.repeats)
    )
    model = _model(args.model)
    try:
        ids, long_ids = _tokens(model, args.prompt), _tokens(model, args.long_prompt)
        out["prompt_tokens"], out["long_prompt_tokens"] = len(ids), len(long_ids)
        threads = _fastest(choices, lambda t: decode_rate(model, ids, 1, PROBE_STEPS, 1, t))
        out["b1_tok_s"] = decode_rate(model, ids, 1, args.new, args.repeats, threads)
        out["b1_threads"] = threads
        threads = _fastest(choices, lambda t: decode_rate(model, ids, 8, PROBE_STEPS, 1, t))
        out["b8_tok_s"] = decode_rate(model, ids, 8, args.batch_new, args.repeats, threads)
        out["b8_threads"] = threads
        threads = _fastest(choices, lambda t: prefill_rate(model, long_ids, 1, t))
        out["prefill_tok_s"] = prefill_rate(model, long_ids, args.repeats, threads)
        out["prefill_threads"] = threads
    finally:
        llama_cpp.llama_model_free(model)
    return out


def main() -> None:
    """Parse arguments, measure, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--prompt", required=True, help="prompt of the decode runs")
    parser.add_argument("--long-prompt", required=True, help="prompt of the prefill runs")
    parser.add_argument("--new", type=int, default=128, help="new tokens, batch 1")
    parser.add_argument("--batch-new", type=int, default=64, help="new tokens each, batch 8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", default=THREADS, help="thread counts to try, comma-separated (e.g. 1,2)"
    )
    args = parser.parse_args()
    print(json.dumps(measure(args)), flush=True)


if __name__ == "__main__":
    main()
