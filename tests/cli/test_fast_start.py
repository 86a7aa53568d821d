"""Fast start: a second ``shield generate`` reads the compiled shield and JAX's executables from
the cache instead of compiling them; ``--no-cache`` and ``SHIELD_NO_CACHE`` turn that off.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shield.cli.generate as generate_command
from shield.cli import main
from shield.store import NO_CACHE_ENV, cache_enabled, cache_root, caching

ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
[spec]
name = "fast-start"

[[rule]]
id = "swear"
forbid.words = ["damn", "heck"]
match = { case = "insensitive", whole_word = true, normalize = ["leet"] }

[[rule]]
id = "key"
forbid.regex = 'sk-[A-Za-z0-9]{8,}'
"""

# Runs the command line in a fresh process and records, through a hook on the compiler, which
# rules ``shield.compile`` compiled there.
DRIVER = """\
import json, sys
import shield.spec_compiler as spec_compiler
compiled = []
original = spec_compiler.compile_rule
def counted(rule, limits):
    compiled.append(rule.id)
    return original(rule, limits)
spec_compiler.compile_rule = counted
from shield.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as handle:
    json.dump({"code": code, "compiled": compiled}, handle)
"""


def _seen_by_generate(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> bool:
    """Whether caching was on where ``shield generate`` compiles and loads (the run is stubbed)."""
    seen: list[bool] = []

    def stub(args: argparse.Namespace) -> int:
        seen.append(cache_enabled())
        return 0

    monkeypatch.setattr(generate_command, "_generate", stub)
    assert main(["generate", "--spec", "pii", "--prompt", "hi", *argv]) == 0
    assert len(seen) == 1  # the scenario: the command ran
    return seen[0]


def test_generate_caches_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    assert not cache_enabled()  # a library call: off
    assert _seen_by_generate(monkeypatch, [])
    assert not _seen_by_generate(monkeypatch, ["--no-cache"])
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert not _seen_by_generate(monkeypatch, [])


def test_every_command_reads_and_writes_the_compiled_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIELD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    spec = tmp_path / "check-me.toml"
    spec.write_text(SPEC.replace("fast-start", "check-me").replace("heck", "heckle"))
    assert main(["check", str(spec)]) == 0
    assert len(list((tmp_path / "cache" / "compiled").glob("*.npz"))) == 1


def test_the_jax_cache_stays_off_when_caching_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import jax

    import decoders

    before = jax.config.jax_compilation_cache_dir
    with caching(False):
        assert decoders.enable_compilation_cache() is None
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert decoders.enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir == before  # nothing was changed


def _generate(cache: Path, spec: Path, record: Path, *extra: str) -> tuple[dict, str]:
    env = {**os.environ, "SHIELD_CACHE_DIR": str(cache), "JAX_PLATFORMS": "cpu"}
    env.pop(NO_CACHE_ENV, None)
    argv = ["generate", "--spec", str(spec), "--chat", "--temperature", "0"]
    argv += ["--max-new-tokens", "4", "--prompt", "Write one friendly sentence.", *extra]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(record), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(record.read_text()), done.stdout


def _jax_entries(cache: Path) -> set[str]:
    return {p.name for p in (cache / "jax").glob("*-cache")}


def _entries(cache: Path, folder: str) -> set[str]:
    return {p.name for p in (cache / folder).glob("*.npz")}


#: The decoder functions exported ahead of time (decoders.aot), when jax.export can serialise.
EXPORTED = {"prefill", "shielded_loop"} if importlib.util.find_spec("flatbuffers") else set()


@pytest.mark.slow
def test_a_second_generate_compiles_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    models = cache_root() / "models"  # the converted model is not what this test is about
    models.mkdir(parents=True, exist_ok=True)
    (cache / "models").symlink_to(models, target_is_directory=True)
    spec = tmp_path / "fast-start.toml"
    spec.write_text(SPEC)

    first, first_text = _generate(cache, spec, tmp_path / "first.json")
    assert first == {"code": 0, "compiled": ["swear", "key"]}
    assert len(list((cache / "compiled").glob("*.npz"))) == 1
    compiled_jax = _jax_entries(cache)
    assert compiled_jax  # the decoder's compilations were stored
    exported, vocabularies = _entries(cache, "aot"), _entries(cache, "vocabulary")
    assert {name.rpartition("-")[0] for name in exported} == EXPORTED
    assert len(vocabularies) == 1  # the tokenizer's bytes and trie

    second, second_text = _generate(cache, spec, tmp_path / "second.json")
    assert second == {"code": 0, "compiled": []}  # the spec was not compiled again
    assert _jax_entries(cache) == compiled_jax  # every JAX compilation came from the cache
    assert _entries(cache, "aot") == exported  # nothing exported (traced) again
    assert _entries(cache, "vocabulary") == vocabularies
    assert second_text == first_text

    uncached, uncached_text = _generate(cache, spec, tmp_path / "third.json", "--no-cache")
    assert uncached == {"code": 0, "compiled": ["swear", "key"]}  # no cache was read
    assert uncached_text == first_text  # the cached path (exports included) decodes the same
