"""Shared fixtures: a tiny VAE config and a session-scoped trained tiny run.

Hypothesis profiles: "fast" (loaded by default, few examples: the default tier) and "thorough"
(many: the slow tier runs ``pytest -m "slow or hypothesis" --hypothesis-profile=thorough``).
Both are derandomized, so every run is reproducible; ``@given`` tests leave ``max_examples`` to
the profile.

One persistent XLA compilation cache serves the whole run: both xdist workers and every
subprocess the tests start (CLI runs, notebooks, multi-device checks) read and write the same
directory, so an executable compiled once (the tiny VAE's train step, say) is not compiled again
by the next test that builds the same program. It is keyed by the program and the jax version,
so it changes no result; it is new for each run and removed at its end, unless
``GENJAX_TEST_JAX_CACHE`` names one (then it is kept).

XLA:CPU compiles at LLVM optimisation level 0 in the tests (``XLA_FLAGS`` gains
``--xla_backend_optimization_level=0``, inherited by subprocesses): most of the suite's time is
compiling tiny models that then run a few steps, and this cuts it by about a third. Results
may differ from an optimised build in the last bits (contraction, vectorised sums), never in
what a test checks: bit-exact comparisons are between two runs under the same flags, and the
recorded parameter hashes are recomputed in a subprocess with the default level
(``tests/train/test_config_hashes.py``). ``GENJAX_TEST_XLA_OPT=default`` turns it off.
"""

from __future__ import annotations

import os
import tempfile

import jax
import pytest
from hypothesis import HealthCheck, settings

_PROFILE = dict(deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fast", max_examples=10, **_PROFILE)
settings.register_profile("thorough", max_examples=100, **_PROFILE)
settings.load_profile("fast")


def _compilation_cache_dir() -> str:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    return os.environ.get("GENJAX_TEST_JAX_CACHE") or os.path.join(
        tempfile.gettempdir(), f"genjax-test-jax-cache-{run}")


_CACHE = {"JAX_COMPILATION_CACHE_DIR": _compilation_cache_dir(),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
os.environ.update(_CACHE)                                   # for subprocesses
FAST_COMPILE = "--xla_backend_optimization_level=0"
if os.environ.get("GENJAX_TEST_XLA_OPT") != "default" and FAST_COMPILE not in os.environ.get(
        "XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
jax.config.update("jax_compilation_cache_dir", _CACHE["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_sessionfinish(session):
    """The controller (not an xdist worker) removes the run's cache unless it was named."""
    if not hasattr(session.config, "workerinput") and not os.environ.get(
            "GENJAX_TEST_JAX_CACHE"):
        import shutil

        shutil.rmtree(_CACHE["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


from genjax.configs import make_config  # noqa: E402  (after XLA_FLAGS is set)


def tiny_vae_config(**training):
    """A VAE small enough to compile in seconds: digits 8x8, one conv level."""
    train = dict(batch_size=16, num_steps=8, steps_per_call=2, log_every=2, checkpoint_every=4,
                 snapshot_every=4, sample_every=0, num_sample_images=4, ema_decay=0.9,
                 progress=False)
    train.update(training)
    return make_config(
        "vae", "digits",
        model_kwargs=dict(image_shape=(8, 8, 1), num_levels=17, latent_dim=4, channels=(8,),
                          hidden_dim=32, decoder="logistic", iwae_samples=4),
        training=train,
        optimizer=dict(learning_rate=3e-3, warmup_steps=2, schedule="cosine", grad_clip=1.0),
        eval=dict(batch_size=128, num_examples=64, num_samples=64, sample_batch_size=32),
    )


@pytest.fixture
def tiny_config():
    return tiny_vae_config()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """(config, workdir, final state) of a tiny VAE trained for 8 steps."""
    from genjax.train.trainer import train_and_evaluate

    config = tiny_vae_config()
    workdir = str(tmp_path_factory.mktemp("trained_tiny"))
    state = train_and_evaluate(config, workdir)
    return config, workdir, state


def perturbed(params, key, scale: float):
    """params + scale * N(0, I) (float leaves), drawn as one vector: one random op to compile
    instead of one per leaf."""
    import jax.flatten_util

    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return unravel(flat + scale * jax.random.normal(key, flat.shape, flat.dtype))
