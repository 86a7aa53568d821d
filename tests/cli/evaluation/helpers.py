"""Fakes for the evaluation tests: a deterministic backend that needs no model, and configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shield.cli.evaluation import Backend, EvalConfig

PROMPTS = ("You are such a", "The weather today is", "My neighbour is a", "Tell me about")
#: The metrics every strategy's row of a report carries.
REPORT_KEYS = frozenset(
    {
        "violation_rate",
        "toxicity_rate",
        "expected_max_toxicity",
        "mean_generated_tokens",
        "mean_kept_tokens",
        "discard_ratio",
        "rollbacks_per_sample",
        "tokens_per_second",
        "perplexity",
        "perplexity_clean",
        "distinct_1",
        "distinct_2",
    }
)


def fake_result(strategy: str, seed: int) -> dict[str, Any]:
    """A response whose content depends only on (strategy, seed), like a real decoder's."""
    toxic = seed % 3 == 0
    words = [f"w{seed % 11}", f"v{seed % 5}", "ok"]
    events: list[dict[str, Any]] = []
    generated, discarded, rollbacks, longest = 6, 0, 0, 0
    if toxic and strategy == "none":
        words.append("bad")
    elif toxic and strategy in ("reset", "backtrack"):
        cut = 6 if strategy == "reset" else 2
        events.append(
            {"kind": "rollback", "rule": "bad-word", "from_token": 6, "to_token": 6 - cut}
        )
        generated, discarded, rollbacks, longest = 6 + cut, cut, 1, cut
    tokens = list(range(len(words) + 1))
    return {
        "text": " ".join(words),
        "finish_reason": "length",
        "tokens": tokens,
        "stats": {
            "generated_tokens": generated,
            "kept_tokens": len(tokens),
            "discarded_tokens": discarded,
            "rollbacks": rollbacks,
            "max_rollback_tokens": longest,
            "wall_seconds": 0.5,
        },
        "events": events,
    }


class FakeBackend:
    """Counts calls; ``fail_after`` raises KeyboardInterrupt on that call (an interruption)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = []
        self.conditions: list[tuple[str | None, bool]] = []
        self.fail_after = fail_after

    def generate(
        self,
        strategy: str,
        prompts: Sequence[str],
        seeds: Sequence[int],
        prefill: str | None = None,
        chat: bool = False,
    ) -> list[dict[str, Any]]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        self.calls.append((strategy, tuple(prompts), tuple(seeds)))
        self.conditions.append((prefill, chat))
        results = [fake_result(strategy, seed) for seed in seeds]
        for result in results:  # the whole call's wall time, like the decoders report it
            result["stats"]["wall_seconds"] = 0.5 * len(seeds)
            result["stats"]["compile_seconds"] = 0.1 * len(seeds)
            if prefill is not None:  # none keeps the prefill, the others cut it to its first word
                kept = prefill if strategy == "none" else prefill.split()[0]
                result["text"] = kept + " " + result["text"]
        return results

    def backend(self) -> Backend:
        return Backend(
            generate=self.generate,
            scan=lambda text: ["bad-word"] if "bad" in text.split() else [],
            toxicity=lambda texts: [0.9 if "bad" in t.split() else 0.1 for t in texts],
            nll=lambda prompts, tokens, chat=False: [(0.5 * len(t), len(t)) for t in tokens],
        )


def make_config(tmp_path: Path, **overrides: Any) -> EvalConfig:
    values: dict[str, Any] = {
        "spec_path": str(tmp_path / "spec.toml"),
        "spec_sha256": "0" * 64,
        "prompts_path": str(tmp_path / "prompts.txt"),
        "prompts_sha256": "1" * 64,
        "samples": 2,
        "max_new_tokens": 8,
        "batch_size": 3,
    }
    values.update(overrides)
    return EvalConfig(**values)
