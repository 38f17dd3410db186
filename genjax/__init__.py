"""genjax: generative models of computer vision in JAX and Flax.

Layers (imports only go downwards)::

    genjax.cli      genjax train | sample | eval
    genjax.train    TrainState, jitted step factory, data parallelism, checkpoints, logging
    genjax.eval     evaluation: bits/dim and sample metrics
    genjax.models   one file per family: loss, sampler, log-likelihood
    genjax.nn       Flax linen building blocks
    genjax.data     embedded and tfds datasets -> numpy batches
    genjax.core     pure jax.numpy math: the equations of the notes

Nothing heavy happens at import: subpackages are imported on use.
"""

__version__ = "0.1.0"

# The repository the notebooks' set-up cell installs from on Colab (pip "git+" URL; a fork
# or "...@branch" works too). Run from a checkout, a notebook installs that checkout
# instead. Every notebook's set-up cell holds this value (checked by the tests).
COLAB_REPO = "https://github.com/genjax/genjax"
