"""The model protocol: what every family provides and what some declare they can do.

Every model is a :class:`Model`::

    params = model.init(rng, batch)
    loss, metrics = model.loss(params, batch, rng)                 # pure, jittable
    images = model.sample(params, rng, num_samples, cond=None)     # uint8 [N, H, W, C]

and carries ``capabilities``, a :class:`Capabilities` record that callers (the
trainer, ``genjax eval``, the CLI) read instead of probing attributes. Each
capability that adds methods has its own Protocol below; a model declares the
capability in ``capabilities`` and implements that Protocol's methods.

Parameter groups and update phases
----------------------------------
A model with several networks (a GAN's generator and discriminator) or with a
pretrained, frozen part (the autoencoder under latent diffusion) declares an
:class:`UpdateRule`: named groups of top-level ``params`` keys, and the phases of
one training step. Phase ``i`` differentiates its own loss with respect to its
group only and applies that group's optimizer; it repeats ``repeat`` times (each
repeat on its own slice of the batch when ``split_batch``), all inside the one
jitted step. The group named ``"frozen"`` is never updated and gets
``optax.set_to_zero()`` (no optimizer moments). A model that declares nothing
has one group ``"model"`` (every trainable key) and one phase with ``model.loss``:
the single-loss path.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import jax
import numpy as np

Params = Any
Batch = Mapping[str, Any]
LossFn = Callable[[Params, Batch, jax.Array], tuple]

FROZEN = "frozen"           # the group that no phase updates (pretrained sub-models)
DEFAULT_GROUP = "model"     # the one group of a model that declares none
STATE_KEY = "state"         # params[STATE_KEY]: non-trainable state (see HasState)

LIKELIHOODS = ("none", "exact", "bound")
CONDITIONING = ("none", "class", "text")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a model can do, declared once by the family.

    likelihood: ``"none"``, ``"exact"`` (log_prob is log p(x)) or ``"bound"`` (a lower
        bound on log p(x), or an upper bound on the NLL); ``likelihood_kind`` says
        which bound in words (``"IWAE lower bound"``).
    conditioning: ``"none"``, ``"class"`` (labels 0..num_classes-1) or ``"text"``
        (captions; see :mod:`genjax.core.conditioning`).
    encode_decode: has ``encode``/``decode`` between data and a latent space.
    state: keeps non-trainable state in ``params["state"]`` (:class:`HasState`).
    split_metrics: measures something over a whole split (:class:`HasSplitMetrics`).
    param_groups: declares an :class:`UpdateRule` (:class:`HasUpdateRule`).
    sample_options: keyword arguments of ``sample`` beyond ``cond`` that the CLI may
        pass (``temperature``, ``top_k``, ``guidance_scale``, ``prompt``).
    inversion: finds latents that reconstruct given images (:class:`HasInversion`).
    log_prob_stats: ``log_prob`` comes with per-example statistics of its computation
        (:class:`HasLogProbStats`; the ODE solver's function evaluations ``nfe``), which
        ``genjax eval`` reports as their means ``log_prob_<name>``.
    super_resolution: generates images given low-resolution versions of them
        (:class:`HasSuperResolution`); ``genjax eval`` measures it on the split's images.
    """

    likelihood: str = "none"
    likelihood_kind: str = ""
    conditioning: str = "none"
    num_classes: int = 0
    encode_decode: bool = False
    state: bool = False
    split_metrics: bool = False
    param_groups: bool = False
    sample_options: tuple[str, ...] = ()
    inversion: bool = False
    log_prob_stats: bool = False
    super_resolution: bool = False

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.conditioning not in CONDITIONING:
            raise ValueError(
                f"conditioning must be one of {CONDITIONING}, got {self.conditioning!r}")
        if (self.conditioning == "class") != (self.num_classes > 0):
            raise ValueError("class conditioning and num_classes > 0 go together")

    @property
    def has_likelihood(self) -> bool:
        return self.likelihood != "none"

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One part of a training step: ``loss(params, batch, rng) -> (loss, metrics)``
    differentiated with respect to ``group``, then that group's optimizer update,
    ``repeat`` times (on ``repeat`` disjoint slices of the batch when ``split_batch``:
    slice r holds examples r, r + repeat, r + 2 repeat, ...)."""

    group: str
    loss: LossFn
    repeat: int = 1
    split_batch: bool = False
    name: str = ""          # metric prefix ("<name>_<metric>"); default: the group
    with_stats: bool = False  # loss returns (loss, (metrics, stats)) for update_state

    def __post_init__(self):
        if self.repeat < 1:
            raise ValueError(f"Phase.repeat must be >= 1, got {self.repeat}")
        if self.group == FROZEN:
            raise ValueError("no phase may update the frozen group")

    @property
    def label(self) -> str:
        return self.name or self.group


@dataclasses.dataclass(frozen=True)
class UpdateRule:
    """Parameter groups (group name -> top-level params keys; ``None`` for one group: every
    key no other group names), the phases of one step, and the groups whose parameters
    get an EMA (default: every trainable group; the others are copied into
    ``ema_params``)."""

    groups: Mapping[str, tuple[str, ...] | None]
    phases: tuple[Phase, ...]
    ema_groups: tuple[str, ...] | None = None

    def __post_init__(self):
        keys = [k for ks in self.groups.values() for k in ks or ()]
        if sum(ks is None for ks in self.groups.values()) > 1:
            raise ValueError("at most one group may take every remaining params key (None)")
        if len(keys) != len(set(keys)):
            raise ValueError(f"a params key is in two groups: {dict(self.groups)}")
        if STATE_KEY in keys:
            raise ValueError(f"params[{STATE_KEY!r}] is non-trainable state, not a group")
        for phase in self.phases:
            if phase.group not in self.groups:
                raise ValueError(f"phase group {phase.group!r} is not one of {list(self.groups)}")
        for g in self.ema_groups or ():
            if g not in self.groups:
                raise ValueError(f"EMA group {g!r} is not one of {list(self.groups)}")
        labels = [p.label for p in self.phases]
        if len(labels) != len(set(labels)):
            raise ValueError(f"phases need distinct names, got {labels}")

    @property
    def trainable_groups(self) -> tuple[str, ...]:
        return tuple(g for g in self.groups if g != FROZEN)

    @property
    def averaged_groups(self) -> tuple[str, ...]:
        return self.trainable_groups if self.ema_groups is None else tuple(self.ema_groups)

    def keys(self, params: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        """Group -> the top-level keys of ``params`` it holds (``"state"`` is in none)."""
        named = {k for ks in self.groups.values() for k in ks or ()}
        missing = sorted(named - set(params))
        if missing:
            raise ValueError(f"parameter groups name keys {missing} that params lack "
                             f"(params has {sorted(params)})")
        rest = tuple(sorted(k for k in params if k not in named and k != STATE_KEY))
        out = {g: (rest if ks is None else tuple(ks)) for g, ks in self.groups.items()}
        if not any(ks is None for ks in self.groups.values()) and rest:
            raise ValueError(f"params keys {list(rest)} are in no parameter group")
        return out


@runtime_checkable
class Model(Protocol):
    """Required of every family."""

    config: Any
    capabilities: Capabilities

    def init(self, rng: jax.Array, batch: Batch) -> Params: ...

    def loss(self, params: Params, batch: Batch, rng: jax.Array) -> tuple: ...

    def sample(self, params: Params, rng: jax.Array, num_samples: int, cond=None): ...


class HasLikelihood(Protocol):
    """``capabilities.likelihood`` is ``"exact"`` or ``"bound"``."""

    def log_prob(self, params: Params, batch: Batch, rng: jax.Array) -> jax.Array:
        """Nats per example [B]: log p(x) or a lower bound on it."""


class HasEncodeDecode(Protocol):
    """``capabilities.encode_decode``."""

    def encode(self, params: Params, data, *args) -> jax.Array: ...

    def decode(self, params: Params, latent, *args) -> jax.Array: ...


class HasState(Protocol):
    """``capabilities.state``: running statistics in ``params["state"]`` (e.g. an EMA
    codebook), updated from sums over the batch after the optimizer step (see
    :mod:`genjax.train.step`)."""

    def loss_and_stats(self, params: Params, batch: Batch, rng: jax.Array) -> tuple: ...

    def update_state(self, params: Params, stats) -> tuple: ...


class HasSplitMetrics(Protocol):
    """``capabilities.split_metrics``."""

    def split_metrics(self, params: Params, batches) -> dict: ...


class HasLogProbStats(Protocol):
    """``capabilities.log_prob_stats``."""

    def log_prob_stats(self, params: Params, batch: Batch, rng: jax.Array, **kwargs) -> tuple:
        """(log p [B] as ``log_prob`` returns it, {name: [B]}), e.g. {"nfe": int32 [B]}."""


class HasInversion(Protocol):
    """``capabilities.inversion``: a generator without an encoder, inverted by optimisation
    (:mod:`genjax.core.inversion`)."""

    def invert(self, params: Params, rng: jax.Array, images, num_steps: int) -> tuple:
        """(latents, reconstructions uint8 [B, H, W, C]) of uint8 ``images`` [B, H, W, C]."""


class HasSuperResolution(Protocol):
    """``capabilities.super_resolution``."""

    def downsample(self, images) -> jax.Array:
        """uint8 images [B, H, W, C] -> their low-res versions in [-1, 1] [B, h, w, C]."""

    def super_resolve(self, params: Params, rng: jax.Array, low, **kwargs) -> jax.Array:
        """uint8 images [B, H, W, C] drawn given low-res images ``low`` in [-1, 1]."""


class HasUpdateRule(Protocol):
    """A model with parameter groups (see :class:`UpdateRule`)."""

    def update_rule(self) -> UpdateRule: ...


def update_rule(model) -> UpdateRule:
    """The model's declared :class:`UpdateRule`, or the single-loss rule: one group
    ``"model"`` of every top-level key but ``"state"``, one phase of ``model.loss``."""
    if model.capabilities.param_groups:
        return model.update_rule()
    state = model.capabilities.state
    loss = model.loss_and_stats if state else model.loss
    return UpdateRule(groups={DEFAULT_GROUP: None},
                      phases=(Phase(DEFAULT_GROUP, loss, with_stats=state),))


def check_data_fields(data_key: str, image_shape: tuple, num_levels: int) -> None:
    """Raise ``ValueError`` unless a family that takes images or points is configured for
    one of them: ``"image"`` with (H, W, C) and at least 2 levels, or ``"point"`` with (D,)."""
    if data_key not in ("image", "point"):
        raise ValueError(f"model.data_key must be 'image' or 'point', got {data_key!r}")
    if data_key == "image" and len(image_shape) != 3:
        raise ValueError(f"images need image_shape = (H, W, C), got {image_shape}")
    if data_key == "image" and num_levels < 2:
        raise ValueError(f"images need num_levels >= 2, got {num_levels}")
    if data_key == "point" and len(image_shape) != 1:
        raise ValueError(f"points need image_shape = (D,), got {image_shape}")


def check_batch(model, batch: Batch) -> None:
    """Raise ``ValueError`` when a batch cannot be data of ``model``: images of another
    shape, not integer levels, or levels outside 0..num_levels-1 (a likelihood would
    clip them and return a wrong number). Runs on concrete arrays only (numpy, or jax
    arrays outside ``jit``; traced values pass unchecked): the trainer and ``genjax
    eval`` call it on every host batch, and each family's ``log_prob`` on its input."""
    config = model.config
    key = getattr(config, "data_key", "image")
    if key != "image" or key not in batch or isinstance(batch[key], jax.core.Tracer):
        return
    images = batch[key]
    shape = tuple(getattr(config, "image_shape", ()) or ())
    if shape and tuple(images.shape[1:]) != shape:
        raise ValueError(f"batch['image'] has examples of shape {tuple(images.shape[1:])}, "
                         f"but this model's image_shape is {shape}")
    dtype = np.dtype(images.dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"batch['image'] must hold integer levels (uint8), got {dtype}; "
                         "models scale and dequantize the levels themselves")
    levels = getattr(config, "num_levels", 0)
    if levels:
        values = np.asarray(images)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high >= levels:
            raise ValueError(f"batch['image'] has levels in [{low}, {high}], outside this "
                             f"model's 0..{levels - 1} (config.model.num_levels = {levels})")
