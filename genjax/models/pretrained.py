"""A trained genjax run as the frozen part of another model (the VAE under latent
diffusion, the VQ-VAE under the token prior).

The checkpoint layout has one owner, :mod:`genjax.train.checkpoint`; this is the one
place where ``models`` reaches up to it, lazily, to read a run (see the layering note
in docs/architecture.md).
"""

from __future__ import annotations


def load_pretrained(workdir: str, *, kind: str, image_shape=None, role: str):
    """(model, EMA params) of the run in ``workdir``, which must hold a ``kind`` model
    of images ``image_shape``; one-line ``CheckpointError`` otherwise."""
    from genjax import models
    from genjax.train.checkpoint import load_pretrained as read_run

    config, params = read_run(workdir, kind=kind, image_shape=image_shape, role=role)
    return models.build(config), params
