"""genjax.core: the equations of the notes as pure jax.numpy functions.

No Flax, no state: each function takes arrays (and, where needed, a PRNG key or a
callable such as a score function) and returns arrays, so it can be tested against
closed forms and property tests. Import the modules themselves; this package
imports nothing so that ``import genjax.core`` stays cheap::

    from genjax.core import likelihoods
    log_px = likelihoods.discretized_gaussian_log_prob(x, mean, log_scale)

Modules:
    likelihoods   Bernoulli / Gaussian / discretized Gaussian and logistic (mixture)
                  log-likelihoods, Gaussian KL, reparameterization, bits/dim,
                  dequantization and data scaling.
"""
