"""The GGUF benchmark's report (bench/bench_gguf.py) on tiny literal runs: no model, no llama.cpp.

The benchmark itself runs by hand (it needs llama-cpp-python built from source); these tests keep
its table and verdict logic from rotting silently.
"""

from __future__ import annotations

from bench.bench_gguf import NOT_BUILT, Run, Side, report, table, targets

LLAMA = {"b1_tok_s": 100.0, "b8_tok_s": 200.0, "prefill_tok_s": 1000.0}
LLAMA_LOADS = {"load_cold_s": 0.2, "load_warm_s": 0.1, "weight_mb": 100.0}
LLAMA_THREADS = {"b1_threads": 1.0, "b8_threads": 2.0, "prefill_threads": 2.0}


def _ours(label: str, b1: float, b8: float, prefill: float, warm: float, mb: float) -> Side:
    numbers = {"b1_tok_s": b1, "b8_tok_s": b8, "prefill_tok_s": prefill}
    return Side(label, {**numbers, "load_cold_s": 1.0, "load_warm_s": warm, "weight_mb": mb})


def _run(llama_after_b1: float = 80.0, built: bool = True) -> Run:
    before = (
        Side("llama.cpp", {**LLAMA, **LLAMA_LOADS, **LLAMA_THREADS})
        if built
        else Side("llama.cpp", None, NOT_BUILT)
    )
    after = (
        Side("llama.cpp", {**LLAMA, **LLAMA_LOADS, **LLAMA_THREADS, "b1_tok_s": llama_after_b1})
        if built
        else Side("llama.cpp", None, NOT_BUILT)
    )
    fast = _ours("gguf", b1=99.0, b8=450.0, prefill=1200.0, warm=0.3, mb=100.0)
    slow = _ours("dense", b1=20.0, b8=100.0, prefill=500.0, warm=0.9, mb=500.0)
    missing = Side("int8", None, "load_model has no weights='int8' yet")
    return Run(
        bandwidth_gbps=(10.0, 9.0),
        llama=(before, after),
        ours=(slow, missing, fast),
        gguf_mb=100.0,
        load_average=(1.0, 3.0),
    )


def test_ratios_are_against_the_faster_llama_cpp_run() -> None:
    run = _run(llama_after_b1=80.0)
    assert run.llama_best("b1_tok_s") == 100.0  # scenario: the after run was slower
    assert run.llama_best("load_warm_s") == 0.1  # for times, the smaller is the better
    lines = table(run).splitlines()
    b1 = next(line for line in lines if line.startswith("| batch 1"))
    assert "100.0 / 80.0" in b1 and "99.0 (0.99x)" in b1 and "20.0 (0.20x)" in b1
    assert "threads chosen (before/after): batch 1 1/1, batch 8 2/2, prefill 2/2" in report(run)


def test_bandwidth_fraction_uses_the_larger_bandwidth_and_each_sides_bytes() -> None:
    run = _run()
    assert run.bandwidth == 10.0
    row = next(line for line in table(run).splitlines() if "bandwidth-bound" in line)
    # llama.cpp 100 tok/s x 100 MB / 10 GB/s = 1.00 (before), 0.80 (after); ours gguf 0.99,
    # dense 20 x 500 MB / 10 GB/s = 1.00.
    assert row == "| bandwidth-bound fraction, batch 1 | 100% / 80% | 100% | — | 99% |"


def test_targets_met_missed_and_unavailable() -> None:
    rows = {line.split(" | ")[0]: line for line in targets(_run()).splitlines()}
    b1 = rows["| batch 1 >= 0.95x llama.cpp"]
    assert b1.endswith(
        "| missed (0.20x) | n/a (load_model has no weights='int8' yet) | met (0.99x) |"
    )
    assert rows["| batch 8 >= 2.0x llama.cpp"].endswith(
        "| missed (0.50x) | n/a (load_model has no weights='int8' yet) | met (2.25x) |"
    )
    assert "met (0.30 s)" in rows["| warm load <= 0.5 s"]
    assert "missed (0.90 s)" in rows["| warm load <= 0.5 s"]
    assert "met (1.20x)" in rows["| prefill >= llama.cpp"]
    assert "met (99%)" in rows["| batch 1 >= 90% of the bandwidth bound"]


def test_without_llama_cpp_the_report_says_how_to_build_it() -> None:
    run = _run(built=False)
    assert run.llama_best("b1_tok_s") is None  # scenario: nothing measured on llama.cpp's side
    text = report(run)
    assert NOT_BUILT in table(run)
    assert f"n/a ({NOT_BUILT})" in targets(run)
    assert "met (0.30 s)" in targets(run)  # a target that needs no llama.cpp is still judged
    assert "int8: load_model has no weights='int8' yet" in text


def test_a_llama_cpp_run_missing_on_one_side_is_shown_as_missing() -> None:
    run = _run()
    run = Run(
        bandwidth_gbps=run.bandwidth_gbps,
        llama=(Side("llama.cpp", None, NOT_BUILT), run.llama[1]),  # built during the run
        ours=run.ours,
        gguf_mb=run.gguf_mb,
        load_average=run.load_average,
    )
    assert run.llama_best("b1_tok_s") == 80.0  # scenario: only the after run has numbers
    b1 = next(line for line in table(run).splitlines() if line.startswith("| batch 1"))
    assert "| — / 80.0 |" in b1 and "99.0 (1.24x)" in b1
