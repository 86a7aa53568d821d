"""Test-wide settings: Hypothesis profiles, JAX on several host CPU devices, strict promotion.

Profiles: ``default`` is fast for local runs; ``ci`` (selected by ``HYPOTHESIS_PROFILE=ci`` in
``.ci/run``) runs more examples so that the property tests matter. The JAX settings are applied
before any test module imports JAX, so sharding tests see several devices.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Four fake CPU devices for the sharding tests; must be set before JAX initialises its backend.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()

settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: object) -> None:
    """Turn on JAX's strict dtype promotion when JAX is installed (it is in the dev set-up)."""
    try:
        import jax
    except ImportError:  # the import-without-JAX test runs in a subprocess of its own
        return
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
