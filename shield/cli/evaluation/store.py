"""The output directory of an evaluation, and how an interrupted run continues.

``DIR/config.json`` holds the run's :class:`~shield.cli.evaluation.records.EvalConfig`;
``DIR/samples.jsonl`` grows by whole lines, flushed and synced after every decoder batch. When a
run starts in a directory that already holds samples, :meth:`SampleStore.open` loads them, so the
runner skips what is done: nothing is recomputed and nothing is lost. A last line cut short by an
interruption is dropped (its batch is regenerated); any other unreadable line, or a line of another
configuration, is an error that tells the user to choose another ``--out`` or delete the directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shield.cli.evaluation.records import EvalConfig, EvaluationError, Sample

__all__ = ["CONFIG_FILE", "SAMPLES_FILE", "SampleStore"]

CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.jsonl"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return ", ".join(f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in changed)


class SampleStore:
    """Reads and appends the samples of one run in ``out``.

    Args:
        out: the output directory (created when missing).
        config: the run's configuration; every line must carry its hash.

    Example:
        >>> store = SampleStore(Path("eval-out"), config)  # doctest: +SKIP
        >>> done = store.open()  # doctest: +SKIP
        >>> store.append(new_samples)  # doctest: +SKIP
    """

    def __init__(self, out: Path, config: EvalConfig) -> None:
        self.out = out
        self.config = config
        self.samples_path = out / SAMPLES_FILE
        self.config_path = out / CONFIG_FILE

    def _mismatch(self, found_hash: str, where: str, old: dict[str, Any] | None) -> EvaluationError:
        detail = ""
        if old is not None:
            detail = f" (changed: {_differences(old, self.config.identity())})"
        return EvaluationError(
            f"{where}: written by another evaluation configuration (hash {found_hash}, this run "
            f"{self.config.config_hash}){detail}; choose another --out or delete {self.out}"
        )

    def _check_config_file(self) -> dict[str, Any] | None:
        if not self.config_path.exists():
            return None
        try:
            old = json.loads(self.config_path.read_text(encoding="utf-8"))
            found = str(old["config_hash"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise EvaluationError(
                f"{self.config_path}: unreadable ({error}); choose another --out or delete {self.out}"
            ) from error
        identity = {key: old.get(key) for key in self.config.identity()}
        if found != self.config.config_hash:
            raise self._mismatch(found, str(self.config_path), identity)
        return identity

    def open(self) -> dict[tuple[str, int, int], Sample]:
        """Create the directory, check it belongs to this configuration, and load its samples.

        Returns:
            The samples already written, by ``(strategy, prompt_index, sample)``.

        Raises:
            EvaluationError: the directory holds another configuration's samples, or a line
                (other than a cut-short last line) is unreadable; the message names the line.
        """
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EvaluationError(
                f"{self.out}: cannot create the output directory ({error})"
            ) from error
        old = self._check_config_file()
        done = self._load(old)
        temporary = self.config_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.config.to_json(), indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.config_path)
        return done

    def _load(self, old: dict[str, Any] | None) -> dict[tuple[str, int, int], Sample]:
        if not self.samples_path.exists():
            return {}
        data = self.samples_path.read_bytes()
        done: dict[tuple[str, int, int], Sample] = {}
        offset = 0
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, start=1):
            where = f"{self.samples_path}:{number}"
            last = number == len(lines)
            if raw.strip():
                try:
                    value = json.loads(raw)
                except ValueError as error:
                    if last:  # cut short by an interruption: drop it, its batch is redone
                        self._truncate(offset)
                        return done
                    raise EvaluationError(
                        f"{where}: invalid JSON ({error}); delete the line or the directory"
                    ) from error
                found = value.get("config_hash") if isinstance(value, dict) else None
                if found != self.config.config_hash:
                    raise self._mismatch(str(found), where, old)
                sample = Sample.from_json(value, where)
                done.setdefault(sample.key, sample)
            offset += len(raw) + 1
        if data and not data.endswith(b"\n"):  # a complete last line without its newline
            with self.samples_path.open("ab") as handle:
                handle.write(b"\n")
        return done

    def _truncate(self, size: int) -> None:
        with self.samples_path.open("r+b") as handle:
            handle.truncate(size)

    def append(self, samples: Iterable[Sample]) -> None:
        """Append samples as whole lines, then flush and sync, so an interruption loses at most
        the batch being written.

        Args:
            samples: the new samples.
        """
        text = "".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in samples)
        if not text:
            return
        with self.samples_path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
