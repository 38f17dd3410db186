"""Model families. ``build(config.model)`` returns a :class:`~genjax.models.protocol.Model`:

    params = model.init(rng, batch)
    loss, metrics = model.loss(params, batch, rng)         # pure, jittable
    images = model.sample(params, rng, num_samples, cond=None)   # uint8 [N, H, W, C]
    model.capabilities                                    # what else it declares it can do

One dictionary maps ``config.model.name`` to (module, model class, config dataclass);
:func:`build` turns the ConfigDict into the family's frozen config dataclass at this
boundary and calls the model class with it.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

# model name -> (module, model class, config dataclass).
_REGISTRY = {
    "vae": ("genjax.models.vae", "VAE", "VAEConfig"),
    "ddpm": ("genjax.models.ddpm", "DDPM", "DDPMConfig"),
    "vqvae": ("genjax.models.vqvae", "VQVAE", "VQVAEConfig"),
    "token_prior": ("genjax.models.token_prior", "TokenPrior", "TokenPriorConfig"),
    "realnvp": ("genjax.models.flows", "RealNVP", "RealNVPConfig"),
    "glow": ("genjax.models.flows", "Glow", "GlowConfig"),
    "fvsbn": ("genjax.models.autoregressive", "FVSBN", "FVSBNConfig"),
    "nade": ("genjax.models.autoregressive", "NADE", "NADEConfig"),
    "made": ("genjax.models.autoregressive", "MADE", "MADEConfig"),
    "pixelcnn": ("genjax.models.autoregressive", "PixelCNNModel", "PixelCNNConfig"),
    "gated_pixelcnn": ("genjax.models.autoregressive", "GatedPixelCNNModel",
                       "GatedPixelCNNConfig"),
    "wavenet": ("genjax.models.autoregressive", "WaveNetModel", "WaveNetConfig"),
    "pixel_transformer": ("genjax.models.autoregressive", "PixelTransformer",
                          "TransformerConfig"),
    "row_lstm": ("genjax.models.autoregressive", "RowLSTMModel", "PixelRNNConfig"),
    "diagonal_bilstm": ("genjax.models.autoregressive", "DiagonalBiLSTMModel",
                        "PixelRNNConfig"),
    "toy_gan": ("genjax.models.toy_gan", "ToyGAN", "ToyGANConfig"),
    "gan": ("genjax.models.gan", "ImageGAN", "GANConfig"),
    "pix2pix": ("genjax.models.translation", "Pix2Pix", "Pix2PixConfig"),
    "cyclegan": ("genjax.models.translation", "CycleGAN", "CycleGANConfig"),
    "stylegan": ("genjax.models.stylegan", "StyleGAN", "StyleGANConfig"),
    "score_sde": ("genjax.models.score", "ScoreSDE", "ScoreSDEConfig"),
    "flow_matching": ("genjax.models.flow_matching", "FlowMatching", "FlowMatchingConfig"),
    "ebm": ("genjax.models.ebm", "EBM", "EBMConfig"),
    "noise_classifier": ("genjax.models.noise_classifier", "NoiseClassifier",
                         "NoiseClassifierConfig"),
    "clip": ("genjax.models.clip", "CLIP", "CLIPConfig"),
}


def available_models() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def config_to_dataclass(cls, config: Mapping[str, Any], *, where: str = "config"):
    """Build the frozen dataclass ``cls`` from a ConfigDict/dict, checking keys.

    Unknown keys raise ``ValueError`` naming the key and the valid ones; lists
    become tuples (JSON round trips turn tuples into lists).
    """
    values = dict(config.items())
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"Unknown key(s) {unknown} in {where}; valid keys are {sorted(fields)}."
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


def config_class(name: str):
    """The frozen config dataclass of model ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model name {name!r}; available: {available_models()}.")
    module_name, _, config_name = _REGISTRY[name]
    return getattr(importlib.import_module(module_name), config_name)


def build(config: Mapping[str, Any]):
    """The model named by ``config['name']``, configured by the other fields."""
    name = config.get("name")
    cls = config_class(name)
    module_name, class_name, _ = _REGISTRY[name]
    fields = {k: v for k, v in config.items() if k != "name"}
    model_config = config_to_dataclass(cls, fields, where="config.model")
    return getattr(importlib.import_module(module_name), class_name)(model_config)
