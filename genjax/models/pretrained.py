"""Parameters of a trained genjax run, for models built on another (latent diffusion).

Lives in ``models`` (not ``train``) so that a model can load its frozen
component without importing the trainer: it reads the run's ``config.json``
and the EMA parameters of its latest checkpoint directly with orbax.
"""

from __future__ import annotations

import json
import os

import ml_collections
import orbax.checkpoint as ocp


def load_ema_params(workdir: str):
    """(model config ConfigDict, EMA params pytree) of the latest checkpoint in ``workdir``."""
    config_path = os.path.join(workdir, "config.json")
    latest = os.path.join(os.path.abspath(workdir), "checkpoints", "latest")
    if not os.path.exists(config_path) or not os.path.isdir(latest):
        raise FileNotFoundError(
            f"{workdir} is not a trained genjax run (needs config.json and checkpoints/latest); "
            "train the autoencoder first and point the config at its workdir."
        )
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    steps = sorted(int(s) for s in os.listdir(latest) if s.isdigit())
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {latest}")
    with ocp.StandardCheckpointer() as ckpt:
        state = ckpt.restore(os.path.join(latest, str(steps[-1]), "state"))
    return config.model, state["ema_params"]
