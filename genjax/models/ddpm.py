"""Denoising diffusion (DDPM / DDIM), classifier-free guidance, inpainting, latent diffusion.

Forward process (notation of the notes): q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1},
beta_t I), so q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) and

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I).

The network predicts eps, x_0 or v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0
(``target``) from (x_t, t[, y]); training minimises the weighted squared error
to that target (L_simple, or min-SNR-gamma weighting). The reverse process
p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) takes mu_theta from the
posterior q(x_{t-1} | x_t, x_0) with x_0 replaced by its prediction.

Sampling is one jitted ``lax.fori_loop``: DDPM ancestral sampling over all T
steps (``sampler = "ddpm"``, variance beta_tilde_t "small" or beta_t "large") or
DDIM over any number of steps <= T with ``eta`` (``sampler = "ddim"``; eta = 1
is ancestral sampling on the sub-sequence, eta = 0 deterministic). The number
of steps, eta and the guidance scale are traced arguments: changing them
between calls does not recompile.

Classifier-free guidance (Ho & Salimans): labels are replaced by a null class
with probability ``label_dropout`` in training; at sampling
eps = (1 + w) eps_theta(x_t, y) - w eps_theta(x_t, null) with w = guidance_scale
(w = 0: the conditional model).

Text-to-image (``captions`` = "shapes" or "digits"): the condition is the caption of
each image (:mod:`genjax.data.captions`, ``text_len`` tokens), encoded by a text tower
(:mod:`genjax.models.text_encoder`; by default a small transformer trained jointly,
``params["text_encoder"]``) into a pooled vector, added to the U-Net's embedding, and
per-token states that the U-Net cross-attends to (:class:`~genjax.nn.unet.CrossAttentionBlock`).
The null condition is the empty (all-pad) caption, to which captions are dropped with
probability ``label_dropout``; guidance is the same combination as for labels. Sampling
takes a ``prompt`` (or token ids as ``cond``; without either, the captions in turn), and
encodes the prompt and the empty caption once, outside the chain.

:meth:`DDPM.log_prob` is the variational bound (nats per example)
    -log p(x_0) <= KL(q(x_T|x_0) || N(0, I)) + sum_{t>1} KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t))
                   - log p(x_0 | x_1),
with a discretized Gaussian decoder at t = 1 over the data's levels: an upper
bound on the negative log-likelihood of the discrete data, not the exact value.

Latent diffusion (``autoencoder_workdir``): the same process on the posterior
means mu_phi(x) of a trained VAE (genjax.models.vae), whose parameters are
loaded when the model is built, kept in ``params["autoencoder"]``, the frozen
parameter group (no gradient, no optimizer moments; see
:class:`~genjax.models.protocol.UpdateRule`); samples are decoded by the VAE decoder.

Conditioning follows :mod:`genjax.core.conditioning`: without ``cond`` a class-
conditional model samples the classes in turn.

Super-resolution (SR3, Saharia et al. 2021; ``low_res_shape``): the model of x_0 at
``image_shape`` given a low-resolution image z of shape ``low_res_shape``, made from the
target itself by average pooling (:func:`~genjax.core.diffusion.downsample_mean`), so every
pair is consistent and any image dataset serves. z is corrupted by noise-conditioning
augmentation (Ho et al. 2021, "Cascaded Diffusion Models"):
z_s = sqrt(alpha_bar(s)) z + sqrt(1 - alpha_bar(s)) noise with s ~ U(0, ``max_aug_level``) in
training and s = ``sampling_aug_level`` (traced: ``aug_level``) at sampling; z_s is upsampled
(``low_res_upsample``) and concatenated to x_t as extra input channels, and s is embedded and
added to the U-Net's time embedding. The loss is the DDPM loss of this conditional network,
``sample(cond=low_res)`` draws x_0 given low-res images, and ``log_prob`` is the bound on
log p(x | z_s). A cascade (``base_workdir``): a trained DDPM run at ``low_res_shape`` is kept
frozen in ``params["base"]``; without low-res images ``sample`` draws them from it (its
``cond``, labels for a class-conditional base) and super-resolves them.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
from genjax.core import diffusion as dm
from genjax.core import likelihoods as lk
from genjax.core.random import batch_draw
from genjax.data import captions as cap
from genjax.models.protocol import (DEFAULT_GROUP, FROZEN, Capabilities, Phase, UpdateRule,
                                    check_batch)
from genjax.models.text_encoder import build_text_encoder
from genjax.nn import precision
from genjax.nn.unet import denoiser

_SCHEDULES = {"linear": dm.linear_beta_schedule, "cosine": dm.cosine_beta_schedule,
              "sigmoid": dm.sigmoid_beta_schedule}


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
    image_shape: tuple[int, ...] = (16, 16, 1)  # data shape: (H, W, C) images, (D,) points
    num_levels: int = 256           # levels of the image data (0: continuous points)
    data_key: str = "image"         # batch key of the data: image | point
    num_timesteps: int = 1000       # T
    schedule: str = "cosine"        # linear | cosine | sigmoid
    target: str = "eps"             # network output: eps | x0 | v
    loss_weighting: str = "simple"  # simple | min_snr
    min_snr_gamma: float = 5.0      # gamma of min-SNR weighting
    variance: str = "small"         # reverse variance: small (beta_tilde) | large (beta)
    clip_x0: bool = True            # clip predicted x_0 to [-1, 1] while sampling (images)
    base_channels: int = 32         # U-Net width
    channel_mults: tuple[int, ...] = (1, 2)   # U-Net width multipliers per resolution
    num_res_blocks: int = 1         # ResBlocks per resolution
    attention_resolutions: tuple[int, ...] = (8,)  # feature-map sides with self-attention
    num_heads: int = 4              # attention heads
    dropout: float = 0.0            # dropout in ResBlocks
    mlp_hidden: int = 256           # MLP width (points and latents)
    mlp_blocks: int = 3             # residual MLP blocks (points and latents)
    num_classes: int = 0            # > 0: class-conditional on ``label``
    label_dropout: float = 0.1      # p(label -> null class, caption -> empty) in training
    captions: str = ""              # text-conditional on the captions digits | shapes ("": no)
    text_len: int = 8               # caption tokens (padded on the right)
    text_encoder: str = "transformer"   # text tower (genjax/models/text_encoder.py)
    text_dim: int = 64              # width of the joint text transformer
    text_layers: int = 2            # its blocks
    text_heads: int = 4             # its attention heads
    sampler: str = "ddpm"           # ddpm | ddim
    sample_steps: int = 0           # DDIM steps by default (0 = T)
    eta: float = 0.0                # DDIM eta by default
    guidance_scale: float = 0.0     # w by default
    autoencoder_workdir: str = ""   # latent diffusion: workdir of a trained VAE run
    compute_dtype: str = "float32"  # U-Net computation dtype (bfloat16 on accelerators)
    low_res_shape: tuple[int, ...] = ()  # super-resolution: (h, w, C) of the low-res input
    low_res_upsample: str = "nearest"    # nearest | bilinear: low-res -> image_shape for x_t
    max_aug_level: float = 0.0      # s_max: training augmentation level s ~ U(0, s_max)
    sampling_aug_level: float = 0.0  # s of the low-res input at sampling and evaluation
    base_workdir: str = ""          # cascade: workdir of a DDPM run at low_res_shape
    remat: bool = False             # recompute U-Net block activations in backward (memory)

    def __post_init__(self):
        checks = {"schedule": _SCHEDULES, "target": ("eps", "x0", "v"),
                  "loss_weighting": ("simple", "min_snr"), "variance": ("small", "large"),
                  "sampler": ("ddpm", "ddim"), "data_key": ("image", "point")}
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"model.{name} must be one of {sorted(valid)}, "
                                 f"got {getattr(self, name)!r}")
        precision.compute_dtype(self.compute_dtype)     # a clear error for an unknown name
        if not 0 <= self.sample_steps <= self.num_timesteps:
            raise ValueError(f"model.sample_steps must be in [0, {self.num_timesteps}]")
        if self.captions:
            if self.captions not in cap.CAPTION_LENGTHS:
                raise ValueError(f"model.captions must be '' or one of "
                                 f"{sorted(cap.CAPTION_LENGTHS)}, got {self.captions!r}")
            if self.num_classes:
                raise ValueError("model.captions (text) and model.num_classes (class "
                                 "conditioning) exclude each other")
            if self.text_len < cap.CAPTION_LENGTHS[self.captions]:
                raise ValueError(f"model.text_len {self.text_len} is shorter than the "
                                 f"{self.captions!r} captions "
                                 f"({cap.CAPTION_LENGTHS[self.captions]} words)")
        if self.low_res_shape or self.base_workdir:
            self._check_super_resolution()

    def _check_super_resolution(self):
        low, high = tuple(self.low_res_shape), tuple(self.image_shape)
        if len(low) != 3 or len(high) != 3 or self.data_key != "image":
            raise ValueError("model.low_res_shape (super-resolution) needs image models with "
                             f"image_shape and low_res_shape = (H, W, C), got {high}, {low}")
        if low[2] != high[2] or high[0] % low[0] or high[1] % low[1] or \
                high[0] // low[0] != high[1] // low[1]:
            raise ValueError(f"model.low_res_shape = {low} must have the channels of "
                             f"image_shape = {high} and sides that divide it by one factor")
        if self.low_res_upsample not in ("nearest", "bilinear"):
            raise ValueError("model.low_res_upsample must be 'nearest' or 'bilinear', "
                             f"got {self.low_res_upsample!r}")
        for name in ("max_aug_level", "sampling_aug_level"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"model.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.autoencoder_workdir or self.num_classes or self.captions:
            raise ValueError("super-resolution (model.low_res_shape) takes no "
                             "autoencoder_workdir, num_classes or captions")


class DDPM:
    """Diffusion model following the genjax protocol; see the module docstring.

    ``params``: ``{"net": ...}`` plus ``{"autoencoder": ...}`` for latent diffusion and
    ``{"text_encoder": ...}`` for text conditioning and ``{"base": ...}`` (the
    low-resolution DDPM) for a cascade.
    """

    def __init__(self, config: DDPMConfig):
        self.config = c = config
        self.schedule = _SCHEDULES[c.schedule](c.num_timesteps)
        self.latent = bool(c.autoencoder_workdir)
        self.autoencoder = None
        if self.latent:
            from genjax.models.pretrained import load_pretrained

            self.autoencoder, self._ae_params = load_pretrained(
                c.autoencoder_workdir, kind="vae", image_shape=c.image_shape,
                role="config.model.autoencoder_workdir")
            self.x_shape = (self.autoencoder.config.latent_dim,)
        else:
            self.x_shape = tuple(c.image_shape)
        self.net = denoiser(self.x_shape, c)
        self.is_image = len(self.x_shape) == 3 and not self.latent
        self.null_class = c.num_classes
        self.text = bool(c.captions)
        self.text_len = c.text_len if self.text else 0
        self.text_encoder = build_text_encoder(c) if self.text else None
        frozen_text = self.text and self.text_encoder.frozen
        self.super_res = bool(c.low_res_shape)
        self.base = None
        if c.base_workdir:
            from genjax.models.pretrained import load_pretrained

            self.base, self._base_params = load_pretrained(
                c.base_workdir, kind="ddpm", image_shape=c.low_res_shape,
                role="config.model.base_workdir")
            if not self.base.is_image:
                raise ValueError("config.model.base_workdir must hold a DDPM of images")
        # A cascade takes the condition of its base (labels of a class-conditional base).
        classes = self.base.config.num_classes if self.base is not None else c.num_classes
        conditioning = "text" if self.text else "class" if classes else "none"
        kind = "variational bound" + (" of log p(x | low-res)" if self.super_res else "")
        options = (("guidance_scale",) + (("prompt",) if self.text else ())
                   + (("aug_level",) if self.super_res else ()))
        self.capabilities = Capabilities(
            likelihood="bound" if self.is_image else "none",   # the bound needs discrete data
            likelihood_kind=kind if self.is_image else "",
            conditioning=conditioning, num_classes=classes,
            param_groups=self.latent or frozen_text or self.base is not None,
            sample_options=options, super_resolution=self.super_res)

    def update_rule(self) -> UpdateRule:
        """The denoiser (and a jointly trained text encoder) is trained; the autoencoder of
        latent diffusion, a pretrained text tower and the low-resolution base of a cascade
        are frozen."""
        frozen = ((("autoencoder",) if self.latent else ())
                  + (("text_encoder",) if self.text and self.text_encoder.frozen else ())
                  + (("base",) if self.base is not None else ()))
        return UpdateRule(groups={DEFAULT_GROUP: None, FROZEN: frozen},
                          phases=(Phase(DEFAULT_GROUP, self.loss),))

    # ----------------------------------------------------------------- data
    def to_x0(self, params, batch: dict) -> jax.Array:
        """Data -> x_0: images to [-1, 1], points as they are, latents mu_phi(x)."""
        data = batch[self.config.data_key]
        if self.latent:
            ae = jax.lax.stop_gradient(params["autoencoder"])
            mean, _ = self.autoencoder.encode(ae, data, batch)
            return mean
        if self.is_image:
            return lk.to_symmetric(data, self.config.num_levels)
        return jnp.asarray(data, jnp.float32)

    def from_x0(self, params, x0: jax.Array, cond=None) -> jax.Array:
        if self.latent:
            return self.autoencoder.decode(params["autoencoder"], x0, cond)
        if self.is_image:
            return lk.from_symmetric(x0, self.config.num_levels)
        return x0

    def _labels(self, batch: dict):
        """The labels of a batch (class-conditional models), else None."""
        return cnd.labels_of(batch, None, self.config.num_classes)

    def encode_text(self, params, tokens: jax.Array) -> tuple:
        """The network's text condition of caption tokens int [B, L]: (pooled [B, P],
        states [B, L, W], mask bool [B, L], True at the real tokens)."""
        enc = params["text_encoder"]
        if self.text_encoder.frozen:
            enc = jax.lax.stop_gradient(enc)
        pooled, states = self.text_encoder.encode(enc, tokens)
        return pooled, states, tokens != cap.PAD_ID

    def _batch_cond(self, params, batch: dict, drop_key=None):
        """The network's condition of each example of ``batch`` (labels, the encoded caption,
        or None); with ``drop_key`` each is dropped to the null condition with probability
        ``label_dropout`` (training)."""
        c = self.config
        p = c.label_dropout if drop_key is not None else 0.0
        if self.text:
            tokens = cap.caption_tokens(c.captions, batch, self.text_len)
            if p > 0:
                tokens = cnd.drop_condition(drop_key, tokens, cap.PAD_ID, p)
            return self.encode_text(params, tokens)
        y = self._labels(batch)
        if y is not None and p > 0:
            y = cnd.drop_condition(drop_key, y, self.null_class, p)
        return y

    def _sample_cond(self, params, n: int, cond=None, prompt=None):
        """(condition, null condition) of n samples for the network, or (None, None):
        class labels (``cond``; default the classes in turn) and the null class, or the
        encoded caption (``prompt`` or token ids ``cond``; default the captions in turn) and
        the encoded empty caption (:mod:`genjax.core.conditioning`)."""
        c = self.config
        if not self.text:
            if prompt is not None:
                raise ValueError("this diffusion model is not text-conditioned: it takes no "
                                 "prompt")
            y = cnd.class_labels(cond, n, c.num_classes)
            return (None, None) if y is None else (y, jnp.full_like(y, self.null_class))
        tokens = cap.condition_tokens(n, cond, prompt, max_len=self.text_len,
                                      scheme=c.captions)
        null = self.encode_text(params, cap.null_tokens(1, self.text_len))
        return (self.encode_text(params, tokens),
                jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape[1:]), null))

    def _apply(self, params, x_t, t, cond, *, low=None, train=False, rng=None):
        """The network at (x_t, t) given ``cond``: labels [B], the encoded caption
        (:meth:`encode_text`) or None; ``low = (z_up, s)`` (super-resolution): the
        upsampled, augmented low-res image [B, H, W, C] joins x_t as extra channels and its
        augmentation level s [B] the embedding."""
        rngs = {"dropout": rng} if train and rng is not None else None
        y, kw = (None, {"context": cond}) if self.text else (cond, {})
        if low is not None:
            z_up, kw["aug"] = low
            x_t = jnp.concatenate([x_t, z_up], axis=-1)
        return self.net.apply(params["net"], x_t, t, y, train=train, rngs=rngs, **kw)

    # --------------------------------------------------------- super-resolution
    @property
    def factor(self) -> int:
        """The super-resolution factor image side / low-res side."""
        return self.config.image_shape[0] // self.config.low_res_shape[0]

    def downsample(self, images) -> jax.Array:
        """uint8 high-res images [B, H, W, C] -> their low-res version in [-1, 1],
        [B, h, w, C] (average pooling of the scaled images)."""
        return dm.downsample_mean(lk.to_symmetric(images, self.config.num_levels), self.factor)

    def low_res_input(self, z, s, noise) -> tuple:
        """``(z_up, s)`` of :meth:`_apply`: z [B, h, w, C] in [-1, 1] augmented to level s [B]
        with ``noise`` (:func:`~genjax.core.diffusion.augment_condition`), then upsampled."""
        h, w, _ = self.config.image_shape
        z_s = dm.augment_condition(z, s, noise)
        return dm.upsample_to(z_s, h, w, self.config.low_res_upsample), s

    def _low_res_of_cond(self, params, rng, num_samples, cond, guidance_scale):
        """Low-res images in [-1, 1] from ``cond`` (uint8 levels or floats in [-1, 1],
        [N, h, w, C]) or, in a cascade, drawn from the base model given ``cond``."""
        c = self.config
        if cond is not None and getattr(cond, "ndim", 0) == 4:
            shape = (num_samples,) + tuple(c.low_res_shape)
            if tuple(cond.shape) != shape:
                raise ValueError(f"cond: low-res images of shape {shape} expected, "
                                 f"got {tuple(cond.shape)}")
            if jnp.issubdtype(cond.dtype, jnp.integer):
                return lk.to_symmetric(cond, c.num_levels)
            return jnp.asarray(cond, jnp.float32)
        if self.base is None:
            raise ValueError(
                "this super-resolution model needs cond = low-res images [N, "
                f"{', '.join(map(str, c.low_res_shape))}] (uint8 levels, or floats in [-1, 1]), "
                "or config.model.base_workdir (a DDPM run at low_res_shape) to draw them")
        low = self.base.sample(params["base"], rng, num_samples, cond,
                               guidance_scale=guidance_scale)
        return lk.to_symmetric(low, self.base.config.num_levels)

    def super_resolve(self, params, rng, low, *, num_steps=None, eta=None, aug_level=None):
        """x_0 ~ p(x_0 | low): uint8 images [N, H, W, C] given low-res images ``low`` in
        [-1, 1], [N, h, w, C], augmented to ``aug_level`` (default ``sampling_aug_level``);
        ``num_steps``, ``eta`` and ``aug_level`` may be traced."""
        c = self.config
        num_steps, eta, _ = self._defaults(num_steps, eta, 0.0)
        s = c.sampling_aug_level if aug_level is None else aug_level
        n = low.shape[0]
        k_x, k_aug, k_chain = jax.random.split(rng, 3)
        cond = self.low_res_input(low, jnp.full((n,), s, jnp.float32),
                                  jax.random.normal(k_aug, low.shape))
        x_T = jax.random.normal(k_x, (n,) + self.x_shape)
        x0 = self._reverse(params, k_chain, x_T, None, num_steps=num_steps, eta=eta,
                           guidance_scale=0.0, low=cond)
        return self.from_x0(params, x0)

    # ------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        n = batch[self.config.data_key].shape[0]
        x = jnp.zeros((n,) + self.x_shape)
        t = jnp.zeros((n,), jnp.int32)
        kw = {}
        if self.super_res:          # the low-res channels and their augmentation level
            x = jnp.concatenate([x, jnp.zeros_like(x)], axis=-1)
            kw["aug"] = jnp.zeros((n,))
        if self.text:
            k_net, k_text = jax.random.split(rng)
            params = {"text_encoder": self.text_encoder.init(
                k_text, cap.null_tokens(n, self.text_len))}
            context = self.encode_text(params, cap.null_tokens(n, self.text_len))
            params["net"] = self.net.init(k_net, x, t, None, context=context, **kw)
        else:
            params = {"net": self.net.init(rng, x, t, self._labels(batch), **kw)}
        if self.latent:
            params["autoencoder"] = self._ae_params
        if self.base is not None:
            params["base"] = self._base_params
        return params

    def _train_low_res(self, x0, rng):
        """Super-resolution training input ``(z_up, s)``: the low-res image of x0 at a level
        s ~ U(0, max_aug_level) per example; None for other models."""
        if not self.super_res:
            return None
        k_s, k_z = jax.random.split(jax.random.fold_in(rng, 7))
        z = dm.downsample_mean(x0, self.factor)
        s = self.config.max_aug_level * batch_draw(jax.random.uniform, k_s, (x0.shape[0],))
        return self.low_res_input(z, s, batch_draw(jax.random.normal, k_z, z.shape))

    def loss(self, params, batch: dict, rng: jax.Array):
        """Weighted MSE to the target at t ~ U{0..T-1}; metrics ``loss`` and ``mse``."""
        c = self.config
        x0 = self.to_x0(params, batch)
        n = x0.shape[0]
        k_t, k_eps, k_y, k_drop = jax.random.split(rng, 4)
        t = batch_draw(jax.random.randint, k_t, (n,), 0, c.num_timesteps)
        eps = batch_draw(jax.random.normal, k_eps, x0.shape)
        x_t = dm.q_sample(self.schedule, x0, t, eps)
        y = self._batch_cond(params, batch, k_y)
        low = self._train_low_res(x0, rng)
        out = self._apply(params, x_t, t, y, low=low, train=True, rng=k_drop)
        target = {"eps": eps, "x0": x0, "v": None}[c.target]
        if c.target == "v":
            target = dm.predict_v(self.schedule, x0, t, eps)
        mse = jnp.mean(jnp.square(out - target).reshape(n, -1), axis=1)
        weight = dm.snr_weight(self.schedule, t, c.loss_weighting, c.min_snr_gamma, c.target)
        loss = jnp.mean(weight * mse)
        return loss, {"loss": loss, "mse": jnp.mean(mse)}

    def _x0_eps(self, params, x_t, t, y, w, null=None, low=None):
        """Guided (x0_hat, eps_hat) at timesteps t [B]: condition ``y`` (labels, or encoded
        captions) and its null condition ``null`` (default for labels: the null class), or
        y = None (unconditional); ``low``: see :meth:`_apply`."""
        c = self.config
        if y is not None and null is None:
            null = jnp.full_like(y, self.null_class)
        if y is None:
            out = self._apply(params, x_t, t, None, low=low)
            x0, eps = dm.model_output_to_x0_eps(self.schedule, x_t, t, out, c.target)
        else:
            both = self._apply(params, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                               jax.tree.map(lambda a, b: jnp.concatenate([a, b]), y, null))
            x0_both, eps_both = dm.model_output_to_x0_eps(
                self.schedule, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), both,
                c.target)
            eps_c, eps_u = jnp.split(eps_both, 2)
            eps = cnd.guided(eps_c, eps_u, w)
            x0 = dm.predict_x0_from_eps(self.schedule, x_t, t, eps)
        if c.clip_x0 and self.is_image:
            x0 = jnp.clip(x0, -1.0, 1.0)
            eps = dm.predict_eps_from_x0(self.schedule, x_t, t, x0)
        return x0, eps

    def _reverse(self, params, rng, x_T, y, null=None, *, num_steps, eta, guidance_scale,
                 known=None, resample=1, low=None):
        """The reverse chain from x_T as one fori_loop. ``known = (x0_known, mask)``
        re-imposes the known region, noised to the step reached, after every step; with
        ``resample = U > 1`` each step is repeated U times, the U - 1 first results taken back
        to step t by the forward jump q(x_t | x_{t_prev}) (RePaint, Lugmayr et al. 2022)."""
        c = self.config
        T = c.num_timesteps
        n = x_T.shape[0]
        ddpm = c.sampler == "ddpm"
        null_kw = {} if null is None else {"null": null}
        steps = T if ddpm else num_steps
        x0_eps = self._x0_eps if low is None else functools.partial(self._x0_eps, low=low)

        def timestep(i):
            return dm.ddim_timestep(i, T, steps)

        def step(x, t, t_prev, key):
            tb = jnp.full((n,), t)
            x0, eps = x0_eps(params, x, tb, y, guidance_scale, **null_kw)
            if ddpm:
                x = dm.ddpm_step(self.schedule, x, tb, x0, key, variance=c.variance)
            else:
                x = dm.ddim_step(self.schedule, x, tb, jnp.full((n,), t_prev), x0, eps, key,
                                 eta=eta)
            if known is None:
                return x
            x0_known, mask = known
            noise = jax.random.normal(jax.random.fold_in(key, 1), x.shape)
            t_safe = jnp.full((n,), jnp.maximum(t_prev, 0))
            noised = dm.q_sample(self.schedule, x0_known, t_safe, noise)
            noised = jnp.where(t_prev < 0, x0_known, noised)
            return mask * noised + (1 - mask) * x

        def body(i, x):
            key = jax.random.fold_in(rng, i)
            t, t_prev = timestep(i), timestep(i + 1)
            if known is None:
                return step(x, t, t_prev, key)
            # alpha_bar_t / alpha_bar_{t_prev}: the forward jump t_prev -> t (t_prev >= 0 here)
            abar = self.schedule.alphas_cumprod
            ratio = abar[t] / abar[jnp.maximum(t_prev, 0)]

            def again(u, x):
                k_u = jax.random.fold_in(key, 2 + u)
                x_prev = step(x, t, t_prev, k_u)
                noise = jax.random.normal(jax.random.fold_in(k_u, 2), x.shape)
                return jnp.sqrt(ratio) * x_prev + jnp.sqrt(1 - ratio) * noise

            x = jax.lax.fori_loop(0, jnp.where(t_prev < 0, 0, resample - 1), again, x)
            return step(x, t, t_prev, key)

        return jax.lax.fori_loop(0, steps, body, x_T)

    def _defaults(self, num_steps, eta, guidance_scale):
        c = self.config
        return (c.sample_steps or c.num_timesteps if num_steps is None else num_steps,
                c.eta if eta is None else eta,
                c.guidance_scale if guidance_scale is None else guidance_scale)

    def sample(self, params, rng, num_samples: int, cond=None, *, num_steps=None, eta=None,
               guidance_scale=None, prompt=None, aug_level=None):
        """x_T ~ N(0, I), then the reverse chain: uint8 images [N, H, W, C] (points: float [N, D]).

        ``cond``: labels [N] (or an int) for a class-conditional model, caption token ids
        int [N, <= text_len] for a text-conditional one; None: the classes (captions) in
        turn (:mod:`genjax.core.conditioning`). ``prompt`` (text): a string or N strings of
        words of the captions, an alternative to token ids; pass it bound
        (``functools.partial``) when jitting. ``num_steps`` (DDIM), ``eta`` and
        ``guidance_scale`` default to the config and, like token ids, may change between
        jitted calls without recompiling.

        Super-resolution: ``cond`` is the low-res images [N, h, w, C] (uint8 levels, or
        floats in [-1, 1]); in a cascade it may instead be the base model's condition (or
        None), and the base draws the low-res images (with ``guidance_scale``).
        ``aug_level`` (traced) is their augmentation level, default ``sampling_aug_level``.
        """
        if self.super_res:
            k_base, k_sr = jax.random.split(rng)
            low = self._low_res_of_cond(params, k_base, num_samples, cond, guidance_scale)
            return self.super_resolve(params, k_sr, low, num_steps=num_steps, eta=eta,
                                      aug_level=aug_level)
        num_steps, eta, w = self._defaults(num_steps, eta, guidance_scale)
        k_x, k_chain = jax.random.split(rng)
        x_T = jax.random.normal(k_x, (num_samples,) + self.x_shape)
        y, null = self._sample_cond(params, num_samples, cond, prompt)
        x0 = self._reverse(params, k_chain, x_T, y, null, num_steps=num_steps, eta=eta,
                           guidance_scale=w)
        return self.from_x0(params, x0, None if self.text else y)

    def inpaint(self, params, rng, image, mask, cond=None, *, num_steps=None, eta=None,
                guidance_scale=None, resample=1):
        """Fill the unknown pixels of ``image`` (uint8 [N, H, W, C]) where ``mask`` is 0
        (mask: [N, H, W, 1] or [N, H, W, C], 1 = known). The known region is replaced
        by its forward-noised version at every step, so the chain only generates the
        rest; known pixels are returned unchanged.

        With ``resample = 1`` this is the replacement method, whose completion can disagree
        with the known region: early steps see the known region through so much noise that
        the generated part may commit to an image the later, clearer known region
        contradicts. ``resample = U`` repeats each step U times, going back by the forward
        jump in between (RePaint), which lets the two regions agree; U is traced (no
        recompile) and costs U network calls per step."""
        if not self.is_image or self.super_res:
            raise ValueError("inpaint works on image models without a low-res input")
        num_steps, eta, w = self._defaults(num_steps, eta, guidance_scale)
        x0_known = lk.to_symmetric(image, self.config.num_levels)
        mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), x0_known.shape)
        k_x, k_chain = jax.random.split(rng)
        x_T = jax.random.normal(k_x, x0_known.shape)
        y, null = self._sample_cond(params, image.shape[0], cond)
        x0 = self._reverse(params, k_chain, x_T, y, null, num_steps=num_steps, eta=eta,
                           guidance_scale=w, known=(x0_known, mask), resample=resample)
        out = self.from_x0(params, x0)
        return jnp.where(mask > 0, image, out)

    def log_prob(self, params, batch: dict, rng: jax.Array):
        """Variational lower bound on log p(x) in nats per example [B] (see module doc);
        all T terms, one network call per timestep (``lax.map``)."""
        check_batch(self, batch)
        c = self.config
        if not self.is_image:
            raise ValueError("log_prob: the variational bound needs discrete images "
                             "(capabilities.likelihood is 'none' for points and latents)")
        x0 = self.to_x0(params, batch)
        n = x0.shape[0]
        y = self._batch_cond(params, batch)
        image = batch[c.data_key]
        low = None
        if self.super_res:      # conditional on the low-res image at sampling_aug_level
            z = dm.downsample_mean(x0, self.factor)
            noise = jax.random.normal(jax.random.fold_in(rng, 7), z.shape)
            low = self.low_res_input(z, jnp.full((n,), c.sampling_aug_level), noise)

        def term(t_key):
            t, key = t_key
            tb = jnp.full((n,), t)
            x_t = dm.q_sample(self.schedule, x0, tb, jax.random.normal(key, x0.shape))
            out = self._apply(params, x_t, tb, y, low=low)
            x0_hat, _ = dm.model_output_to_x0_eps(self.schedule, x_t, tb, out, c.target)
            x0_hat = jnp.clip(x0_hat, -1.0, 1.0) if c.clip_x0 else x0_hat
            mean, _, log_var = dm.q_posterior(self.schedule, x0_hat, x_t, tb)
            if c.variance == "large":
                log_var = dm.extract(jnp.log(jnp.append(self.schedule.posterior_variance[1],
                                                        self.schedule.betas[1:])), tb, x0.shape)
            kl = dm.vlb_term(self.schedule, x0, x_t, tb, mean, log_var)
            decoder_nll = -lk.discretized_gaussian_log_prob(
                lk.to_symmetric(image, c.num_levels), mean, 0.5 * log_var, c.num_levels
            ).reshape(n, -1).sum(1)
            return jnp.where(t == 0, decoder_nll, kl)

        ts = jnp.arange(c.num_timesteps)
        keys = jax.random.split(rng, c.num_timesteps)
        terms = jax.lax.map(term, (ts, keys))
        return -(terms.sum(0) + dm.prior_kl(self.schedule, x0))
