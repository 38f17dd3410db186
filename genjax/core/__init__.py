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
    variational   the ELBO / importance-weighted (IWAE) bound.
    diffusion     schedules, q(x_t|x_0), posteriors, eps/x0/v conversions, DDPM and
                  DDIM steps, classifier-free guidance, variational-bound terms.
    metrics       Frechet distance, Inception Score, KID, precision/recall.
    contrastive   CLIP's symmetric InfoNCE, its large-batch limit, retrieval recall@k.
    random        per-batch random draws that do not depend on device sharding,
                  and the parameter-initialisation key.
"""
