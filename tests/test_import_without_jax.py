"""`import shield` and `import specs` must work where JAX cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_JAX = textwrap.dedent(
    """
    import sys

    class _BlockJax:
        def find_spec(self, name, path=None, target=None):
            if name in ("jax", "jaxlib", "flax") or name.startswith(("jax.", "jaxlib.", "flax.")):
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, _BlockJax())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_JAX + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_blocker_really_blocks_jax() -> None:
    result = _run("import jax")
    assert result.returncode != 0
    assert "blocked for this test" in result.stderr


def test_shield_and_specs_import_without_jax() -> None:
    result = _run(
        """
        import shield, specs
        import shield.cli
        assert not any(m == "jax" or m.startswith("jax.") for m in sys.modules), "JAX was imported"
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_evaluation_package_imports_without_jax() -> None:
    result = _run(
        """
        import shield.cli.evaluation, shield.cli.evaluate
        assert not any(m == "jax" or m.startswith("jax.") for m in sys.modules), "JAX was imported"
        assert "matplotlib" not in sys.modules, "matplotlib was imported"
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_core_never_imports_torch_and_the_adapter_needs_no_jax() -> None:
    result = _run(
        """
        import shield, specs
        import shield.cli
        assert "torch" not in sys.modules and "transformers" not in sys.modules, "torch was imported"
        from adapters import huggingface
        assert not any(m == "jax" or m.startswith("jax.") for m in sys.modules), "JAX was imported"
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
