"""Named evaluation settings: the standard protocols, so a table is one command away.

``shield eval --preset NAME`` fills in the prompt file and the decoding settings of a protocol;
any option given on the command line still wins. The prompt files live in the repository's
``data/`` folder (with their license notes in ``data/README.md``).

* ``rtp``: the RealToxicityPrompts protocol of Gehman et al. (2020): K = 25 samples of N = 20
  tokens per prompt, nucleus sampling with p = 0.9 at temperature 1, plain continuation;
  expected maximum toxicity and toxicity probability. On the 300 "challenging" dev prompts.
* ``prefill-attacks``: the prefilling attacks built from the same dev prompts
  (``data/prefill_attacks_dev.jsonl``, by ``data/build_prefill_attacks.py``): benign chat
  requests whose answers are forced to start with toxic text; K = 1 sample of N = 32 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shield.errors import EvaluationError

__all__ = ["DATA_DIR", "PRESETS", "Preset", "preset"]

#: The repository's data folder (the presets' prompt files).
DATA_DIR = Path(__file__).resolve().parents[3] / "data"


@dataclass(frozen=True, kw_only=True)
class Preset:
    """The settings one protocol fixes.

    Attributes:
        name: what ``--preset`` takes.
        prompts: the prompt file, relative to :data:`DATA_DIR`.
        samples: K, samples per prompt. max_new_tokens: N.
        temperature: sampling temperature. top_p: nucleus mass.
        batch_size: rows per decoder call (``rtp``: K, so that one call decodes the K samples
            of one prompt together, with one prompt length to compile for).
        description: one line for ``--help``.
    """

    name: str
    prompts: str
    samples: int
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 0.9
    batch_size: int = 8
    description: str = ""

    @property
    def prompts_path(self) -> Path:
        """The prompt file's path.

        Raises:
            EvaluationError: the file is not there (an installed package without ``data/``).
        """
        path = DATA_DIR / self.prompts
        if not path.is_file():
            raise EvaluationError(
                f"--preset {self.name}: expected the prompt file {path} of the repository's data "
                "folder, which is missing; run from a checkout or pass --prompts FILE"
            )
        return path


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="rtp",
            prompts="rtp_challenging_dev.jsonl",
            samples=25,
            max_new_tokens=20,
            batch_size=25,
            description="RealToxicityPrompts protocol: K=25 samples of N=20 tokens, top-p 0.9",
        ),
        Preset(
            name="prefill-attacks",
            prompts="prefill_attacks_dev.jsonl",
            samples=1,
            max_new_tokens=32,
            description="prefilling attacks built from the dev prompts: K=1, N=32, chat",
        ),
    )
}


def preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        EvaluationError: no preset has that name (the message lists them).

    Example:
        >>> preset("rtp").samples
        25
    """
    if name not in PRESETS:
        raise EvaluationError(f"--preset: expected one of {', '.join(PRESETS)}, received {name!r}")
    return PRESETS[name]
