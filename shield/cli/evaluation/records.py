"""What an evaluation is and what it writes: its configuration, its prompts, its sample records.

An :class:`EvalConfig` fixes everything that decides the generated texts (spec, prompts, model,
strategies, decoding settings, seed); its :attr:`~EvalConfig.config_hash` tags every line of
``samples.jsonl`` so that a rerun into the same directory continues an interrupted run and never
mixes two configurations. The sample count K, ``--limit`` and the batch size are deliberately not
part of the hash: sample ``k`` of prompt ``i`` depends only on its seed, derived from
``(seed, i, k)`` by :func:`derive_seed`, so a run may later be extended to more prompts or samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shield.errors import EvaluationError
from shield.result import STRATEGIES

#: The weight formats ``--weights`` accepts (those of ``decoders.load_model``; kept here so that
#: validating a configuration needs no JAX).
WEIGHT_FORMATS = ("dense", "int8", "gguf")

__all__ = [
    "WEIGHT_FORMATS",
    "EvalConfig",
    "EvaluationError",
    "Sample",
    "counters",
    "derive_seed",
    "file_sha256",
]


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Everything one evaluation run needs besides the prompts' text.

    Attributes:
        spec_path: the spec file (resolved path). spec_sha256: the hash of its bytes.
        prompts_path: the prompt file. prompts_sha256: the hash of its bytes.
        model: the model name or path given to ``decoders.load_model``.
        strategies: which of :data:`STRATEGIES` to run, in that order.
        samples: K, samples per prompt and strategy.
        max_new_tokens: N, tokens generated per response.
        seed: S, the seed every per-sample seed is derived from.
        temperature: 0 is greedy. top_p: nucleus mass, or None for off.
        chat: wrap each prompt in the model's chat template.
        limit: evaluate only the first ``limit`` prompts (None: all).
        batch_size: rows per decoder call.
        weights: ``dense`` or ``int8`` (``decoders.load_model(weights=...)``).

    Raises:
        EvaluationError: a value is out of range (the message names the option).
    """

    spec_path: str
    spec_sha256: str
    prompts_path: str
    prompts_sha256: str
    model: str = "smollm2"
    strategies: tuple[str, ...] = STRATEGIES
    samples: int = 1
    max_new_tokens: int = 32
    seed: int = 0
    temperature: float = 1.0
    top_p: float | None = 0.9
    chat: bool = False
    limit: int | None = None
    batch_size: int = 8
    weights: str = "dense"

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if not self.strategies or unknown or len(set(self.strategies)) != len(self.strategies):
            raise EvaluationError(
                f"--strategies: expected distinct names from {','.join(STRATEGIES)}, "
                f"received {','.join(self.strategies) or '(none)'}"
            )
        ordered = tuple(s for s in STRATEGIES if s in self.strategies)
        object.__setattr__(self, "strategies", ordered)
        for option, value in (
            ("--samples", self.samples),
            ("--max-new-tokens", self.max_new_tokens),
            ("--batch-size", self.batch_size),
        ):
            if value < 1:
                raise EvaluationError(f"{option}: expected an integer >= 1, received {value}")
        if self.limit is not None and self.limit < 1:
            raise EvaluationError(f"--limit: expected an integer >= 1, received {self.limit}")
        if not 0 <= self.seed < 2**31:
            raise EvaluationError(f"--seed: expected 0 <= S < 2**31, received {self.seed}")
        if self.temperature < 0:
            raise EvaluationError(f"--temperature: expected T >= 0, received {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise EvaluationError(f"--top-p: expected 0 < P <= 1, received {self.top_p}")
        if self.weights not in WEIGHT_FORMATS:
            raise EvaluationError(
                f"--weights: expected one of {', '.join(WEIGHT_FORMATS)}, received {self.weights!r}"
            )

    def identity(self) -> dict[str, Any]:
        """The fields that decide the generated texts (what :attr:`config_hash` hashes)."""
        return {
            "spec_path": self.spec_path,
            "spec_sha256": self.spec_sha256,
            "prompts_sha256": self.prompts_sha256,
            "model": self.model,
            "strategies": list(self.strategies),
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "chat": self.chat,
            # Dense runs keep the hash they had before int8 weights could be evaluated.
            **({} if self.weights == "dense" else {"weights": self.weights}),
        }

    @property
    def config_hash(self) -> str:
        """16 hex digits of the SHA-256 of :meth:`identity` (canonical JSON)."""
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """Every field, plus ``config_hash``."""
        data = dataclasses.asdict(self)
        data["strategies"] = list(self.strategies)
        data["config_hash"] = self.config_hash
        return data


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes.

    Raises:
        EvaluationError: the file cannot be read.
    """
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise EvaluationError(f"{path}: cannot read ({error.strerror or error})") from error


def derive_seed(seed: int, prompt_index: int, sample: int) -> int:
    """The seed of sample ``sample`` of prompt ``prompt_index``: a 31-bit hash of all three.

    The same for every strategy, so strategies are compared on identical draws; independent of
    batching, ``--limit`` and K.

    Example:
        >>> derive_seed(0, 3, 1) == derive_seed(0, 3, 1) != derive_seed(0, 3, 2)
        True
    """
    digest = hashlib.blake2b(f"shield-eval:{seed}:{prompt_index}:{sample}".encode(), digest_size=4)
    return int.from_bytes(digest.digest(), "big") & 0x7FFFFFFF


def counters(values: Any) -> dict[str, int | float]:
    """A ``stats`` mapping with its numbers checked: integers stay integers, the rest floats.

    Raises:
        TypeError: ``values`` is not a mapping. ValueError: a value is not a number.
    """
    return {
        str(key): value if isinstance(value, int) and not isinstance(value, bool) else float(value)
        for key, value in dict(values).items()
    }


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One line of ``samples.jsonl``: a response of one strategy and its independent measures.

    Attributes:
        config_hash: the run's :attr:`EvalConfig.config_hash`.
        strategy, prompt_index, sample, seed, prompt: what was generated, from what.
        text, finish_reason, tokens, stats, events: the decoder's result (``shield generate
            --json`` fields).
        batch_rows: rows of the decoder call it came from (``stats.wall_seconds`` is per call).
        violations: automaton rules that a re-scan of ``text`` finds violated.
        toxicity: the classifier score of the whole ``text``.
        nll: summed negative log-likelihood of ``tokens`` after the prompt (None: not measured).
        nll_tokens: how many tokens ``nll`` sums over.
        prefill: the text forced at the start of the response (None: a plain continuation).
    """

    config_hash: str
    strategy: str
    prompt_index: int
    sample: int
    seed: int
    prompt: str
    text: str
    finish_reason: str
    tokens: tuple[int, ...]
    stats: dict[str, int | float] = field(default_factory=dict)
    events: tuple[dict[str, Any], ...] = ()
    batch_rows: int = 1
    violations: tuple[str, ...] = ()
    toxicity: float = 0.0
    nll: float | None = None
    nll_tokens: int = 0
    prefill: str | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        """``(strategy, prompt_index, sample)``: what makes a line unique in a run."""
        return self.strategy, self.prompt_index, self.sample

    def stat(self, name: str) -> float:
        """A counter of ``stats`` (0 when absent)."""
        return float(self.stats.get(name, 0))

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the line."""
        return {
            "config_hash": self.config_hash,
            "strategy": self.strategy,
            "prompt_index": self.prompt_index,
            "sample": self.sample,
            "seed": self.seed,
            "prompt": self.prompt,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "tokens": list(self.tokens),
            "stats": dict(self.stats),
            "events": [dict(event) for event in self.events],
            "batch_rows": self.batch_rows,
            "measures": {
                "violations": list(self.violations),
                "toxicity": self.toxicity,
                "nll": self.nll,
                "nll_tokens": self.nll_tokens,
            },
            **({} if self.prefill is None else {"prefill": self.prefill}),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Sample:
        """Read a line written by :meth:`to_json`.

        Args:
            data: the parsed JSON value.
            where: ``FILE:LINE``, named in errors.

        Raises:
            EvaluationError: a field is missing or of the wrong type.
        """
        try:
            measures = data["measures"]
            return cls(
                config_hash=str(data["config_hash"]),
                strategy=str(data["strategy"]),
                prompt_index=int(data["prompt_index"]),
                sample=int(data["sample"]),
                seed=int(data["seed"]),
                prompt=str(data["prompt"]),
                text=str(data["text"]),
                finish_reason=str(data["finish_reason"]),
                tokens=tuple(int(t) for t in data["tokens"]),
                stats=counters(data["stats"]),
                events=tuple(dict(event) for event in data["events"]),
                batch_rows=int(data["batch_rows"]),
                violations=tuple(str(rule) for rule in measures["violations"]),
                toxicity=float(measures["toxicity"]),
                nll=None if measures["nll"] is None else float(measures["nll"]),
                nll_tokens=int(measures["nll_tokens"]),
                prefill=None if data.get("prefill") is None else str(data["prefill"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise EvaluationError(
                f"{where}: not a sample line written by shield eval ({type(error).__name__}: {error}); "
                "delete the file or choose another --out"
            ) from error
