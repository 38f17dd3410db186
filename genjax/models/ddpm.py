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
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
from genjax.core import diffusion as dm
from genjax.core import likelihoods as lk
from genjax.core.random import batch_draw
from genjax.models.protocol import (DEFAULT_GROUP, FROZEN, Capabilities, Phase, UpdateRule,
                                    check_batch)
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
    label_dropout: float = 0.1      # p(label -> null class) in training (guidance)
    sampler: str = "ddpm"           # ddpm | ddim
    sample_steps: int = 0           # DDIM steps by default (0 = T)
    eta: float = 0.0                # DDIM eta by default
    guidance_scale: float = 0.0     # w by default
    autoencoder_workdir: str = ""   # latent diffusion: workdir of a trained VAE run
    compute_dtype: str = "float32"  # U-Net computation dtype (bfloat16 on accelerators)
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


class DDPM:
    """Diffusion model following the genjax protocol; see the module docstring.

    ``params``: ``{"net": ...}`` plus ``{"autoencoder": ...}`` for latent diffusion.
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
        self.capabilities = Capabilities(
            likelihood="bound" if self.is_image else "none",   # the bound needs discrete data
            likelihood_kind="variational bound" if self.is_image else "",
            conditioning="class" if c.num_classes else "none", num_classes=c.num_classes,
            param_groups=self.latent, sample_options=("guidance_scale",))

    def update_rule(self) -> UpdateRule:
        """Latent diffusion: the denoiser is trained, the autoencoder is frozen."""
        return UpdateRule(groups={DEFAULT_GROUP: None, FROZEN: ("autoencoder",)},
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

    def _apply(self, params, x_t, t, y, *, train=False, rng=None):
        rngs = {"dropout": rng} if train and rng is not None else None
        return self.net.apply(params["net"], x_t, t, y, train=train, rngs=rngs)

    # ------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        n = batch[self.config.data_key].shape[0]
        x = jnp.zeros((n,) + self.x_shape)
        y = self._labels(batch)
        params = {"net": self.net.init(rng, x, jnp.zeros((n,), jnp.int32), y)}
        if self.latent:
            params["autoencoder"] = self._ae_params
        return params

    def loss(self, params, batch: dict, rng: jax.Array):
        """Weighted MSE to the target at t ~ U{0..T-1}; metrics ``loss`` and ``mse``."""
        c = self.config
        x0 = self.to_x0(params, batch)
        n = x0.shape[0]
        k_t, k_eps, k_y, k_drop = jax.random.split(rng, 4)
        t = batch_draw(jax.random.randint, k_t, (n,), 0, c.num_timesteps)
        eps = batch_draw(jax.random.normal, k_eps, x0.shape)
        x_t = dm.q_sample(self.schedule, x0, t, eps)
        y = self._labels(batch)
        if y is not None and c.label_dropout > 0:
            y = cnd.drop_condition(k_y, y, self.null_class, c.label_dropout)
        out = self._apply(params, x_t, t, y, train=True, rng=k_drop)
        target = {"eps": eps, "x0": x0, "v": None}[c.target]
        if c.target == "v":
            target = dm.predict_v(self.schedule, x0, t, eps)
        mse = jnp.mean(jnp.square(out - target).reshape(n, -1), axis=1)
        weight = dm.snr_weight(self.schedule, t, c.loss_weighting, c.min_snr_gamma, c.target)
        loss = jnp.mean(weight * mse)
        return loss, {"loss": loss, "mse": jnp.mean(mse)}

    def _x0_eps(self, params, x_t, t, y, w):
        """Guided (x0_hat, eps_hat) at timesteps t [B]."""
        c = self.config
        if y is None:
            out = self._apply(params, x_t, t, None)
            x0, eps = dm.model_output_to_x0_eps(self.schedule, x_t, t, out, c.target)
        else:
            both = self._apply(params, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                               jnp.concatenate([y, jnp.full_like(y, self.null_class)]))
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

    def _reverse(self, params, rng, x_T, y, *, num_steps, eta, guidance_scale, known=None,
                 resample=1):
        """The reverse chain from x_T as one fori_loop. ``known = (x0_known, mask)``
        re-imposes the known region, noised to the step reached, after every step; with
        ``resample = U > 1`` each step is repeated U times, the U - 1 first results taken back
        to step t by the forward jump q(x_t | x_{t_prev}) (RePaint, Lugmayr et al. 2022)."""
        c = self.config
        T = c.num_timesteps
        n = x_T.shape[0]
        ddpm = c.sampler == "ddpm"
        steps = T if ddpm else num_steps

        def timestep(i):
            return dm.ddim_timestep(i, T, steps)

        def step(x, t, t_prev, key):
            tb = jnp.full((n,), t)
            x0, eps = self._x0_eps(params, x, tb, y, guidance_scale)
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
               guidance_scale=None):
        """x_T ~ N(0, I), then the reverse chain: uint8 images [N, H, W, C] (points: float [N, D]).

        ``cond``: labels [N] (or an int) for a class-conditional model; None: the
        classes in turn (:mod:`genjax.core.conditioning`). ``num_steps`` (DDIM), ``eta`` and
        ``guidance_scale`` default to the config and may change between jitted calls
        without recompiling.
        """
        num_steps, eta, w = self._defaults(num_steps, eta, guidance_scale)
        k_x, k_chain = jax.random.split(rng)
        x_T = jax.random.normal(k_x, (num_samples,) + self.x_shape)
        y = cnd.class_labels(cond, num_samples, self.config.num_classes)
        x0 = self._reverse(params, k_chain, x_T, y, num_steps=num_steps, eta=eta,
                           guidance_scale=w)
        return self.from_x0(params, x0, y)

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
        if not self.is_image:
            raise ValueError("inpaint works on image models")
        num_steps, eta, w = self._defaults(num_steps, eta, guidance_scale)
        x0_known = lk.to_symmetric(image, self.config.num_levels)
        mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), x0_known.shape)
        k_x, k_chain = jax.random.split(rng)
        x_T = jax.random.normal(k_x, x0_known.shape)
        y = cnd.class_labels(cond, image.shape[0], self.config.num_classes)
        x0 = self._reverse(params, k_chain, x_T, y, num_steps=num_steps, eta=eta,
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
        y = self._labels(batch)
        image = batch[c.data_key]

        def term(t_key):
            t, key = t_key
            tb = jnp.full((n,), t)
            x_t = dm.q_sample(self.schedule, x0, tb, jax.random.normal(key, x0.shape))
            out = self._apply(params, x_t, tb, y)
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
