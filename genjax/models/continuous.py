"""What the continuous-time families (score SDEs, flow matching) share: data as points of
R^D, uniform dequantization with its change of variables, the network, and classifier-free
guidance.

Data. Both families model a continuous density on R^D. Images of L levels k are mapped to

    x = 2 y - 1,   y = (k + u) / L,   u ~ U[0, 1)^D           (``dequantize = True``)

(u = 1/2, the bin centres, with ``dequantize = False``), so x lies in [-1, 1)^D and bin k is
the cube [2k/L - 1, 2(k+1)/L - 1). For any density q on R^D the probability of the discrete
levels P(k) = int_bin q(x) dx (a sub-probability: mass outside [-1, 1] is lost) satisfies,
by Jensen (Theis et al., 2016),

    log P(k) >= E_u[log q(x)] + D log 2 - D log L,

where D log 2 - D log L is the log-volume of one bin of x (the change of variables from
k + u to x). :meth:`ContinuousModel.dequantized` returns x and that term; ``log_prob`` of
both families is log q(x) (through an ODE) plus it, a one-sample estimate of a lower bound on
the discrete log-likelihood, so bits/dim are an upper bound on the true value. Samples map
back by k = clip(floor((x + 1) L / 2), 0, L - 1). 2-D points (``data_key = "point"``) are
modelled as they are.

Network. The diffusion U-Net (:class:`genjax.nn.unet.UNet`) for images and the residual MLP
(:class:`genjax.nn.unet.MLPScoreNet`) for points, both fed ``TIME_SCALE * t`` for t in [0, 1]
(the sinusoidal embedding wants timesteps of order 1000) and a class label y, where y =
``num_classes`` is the null class of classifier-free guidance (labels dropped with
probability ``label_dropout`` in training; at sampling out = (1 + w) out(x, t, y) -
w out(x, t, null) with w = ``guidance_scale``, :func:`genjax.core.conditioning.guided`).

Conditional sampling (:meth:`ContinuousModel.inpaint`, :meth:`ContinuousModel.colorize`): the
family's sampler with the known entries replaced, after every step, by a draw of the path's
marginal at the time reached given them (Song et al., 2021, appendix I); colorization is
inpainting in an orthonormal colour basis whose first axis is the channel mean.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import bijectors as bj
from genjax.core import conditioning as cnd
from genjax.core import ode
from genjax.core.random import batch_draw, device_key
from genjax.models.protocol import check_data_fields
from genjax.nn.unet import denoiser

TIME_SCALE = 1000.0        # the network sees t * TIME_SCALE
# colorize: an orthonormal colour basis whose first axis is the channel mean's direction
COLOR_BASIS = (np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]], np.float32)
               / np.sqrt(np.array([[3.0], [2.0], [6.0]], np.float32)))
TRACES = ("exact", "hutchinson")


@dataclasses.dataclass(frozen=True)
class ContinuousConfig:
    image_shape: tuple[int, ...] = (16, 16, 1)  # data shape: (H, W, C) images, (D,) points
    num_levels: int = 256           # levels of the image data (0: continuous points)
    data_key: str = "image"         # batch key of the data: image | point
    dequantize: bool = True         # images: train on x = 2 (k + u) / L - 1, u ~ U[0, 1)
    base_channels: int = 32         # U-Net width
    channel_mults: tuple[int, ...] = (1, 2)   # U-Net width multipliers per resolution
    num_res_blocks: int = 1         # ResBlocks per resolution
    attention_resolutions: tuple[int, ...] = (8,)  # feature-map sides with self-attention
    num_heads: int = 4              # attention heads
    dropout: float = 0.0            # dropout in ResBlocks / MLP blocks
    mlp_hidden: int = 256           # MLP width (points)
    mlp_blocks: int = 3             # residual MLP blocks (points)
    num_classes: int = 0            # > 0: class-conditional on ``label``
    label_dropout: float = 0.1      # p(label -> null class) in training (guidance)
    guidance_scale: float = 0.0     # w of classifier-free guidance by default
    sample_steps: int = 100         # integration steps of the sampler
    log_prob_trace: str = "hutchinson"  # divergence in log_prob: exact | hutchinson
    log_prob_steps: int = 100       # RK4 steps of the likelihood ODE
    log_prob_solver: str = "rk4"    # likelihood ODE: rk4 | tsit5 | dopri5 (adaptive: diffrax)
    log_prob_rtol: float = 1e-5     # adaptive solvers: relative tolerance of a step
    log_prob_atol: float = 1e-5     # adaptive solvers: absolute tolerance of a step
    compute_dtype: str = "float32"  # U-Net computation dtype (bfloat16 on accelerators)
    remat: bool = False             # recompute U-Net block activations in backward (memory)

    def __post_init__(self):
        check_data_fields(self.data_key, self.image_shape, self.num_levels)
        if self.log_prob_trace not in TRACES:
            raise ValueError(f"model.log_prob_trace must be one of {list(TRACES)}, "
                             f"got {self.log_prob_trace!r}")
        if self.sample_steps < 1 or self.log_prob_steps < 1:
            raise ValueError("model.sample_steps and model.log_prob_steps must be >= 1")
        if self.log_prob_solver not in ode.SOLVERS:
            raise ValueError(f"model.log_prob_solver must be one of {list(ode.SOLVERS)}, "
                             f"got {self.log_prob_solver!r}")
        if self.log_prob_rtol <= 0 or self.log_prob_atol <= 0:
            raise ValueError("model.log_prob_rtol and model.log_prob_atol must be > 0")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"model.label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.num_classes < 0:
            raise ValueError(f"model.num_classes must be >= 0, got {self.num_classes}")


class ContinuousModel:
    """Base of :class:`genjax.models.score.ScoreSDE` and
    :class:`genjax.models.flow_matching.FlowMatching` (see the module docstring).
    ``params``: ``{"net": ...}`` (plus what a family adds)."""

    def __init__(self, config: ContinuousConfig):
        self.config = c = config
        self.is_image = c.data_key == "image"
        self.x_shape = tuple(c.image_shape)
        self.num_dims = math.prod(self.x_shape)
        self.null_class = c.num_classes
        self.net = denoiser(self.x_shape, c)

    def _likelihood(self, what: str) -> dict:
        """Capabilities fields of the likelihood: a bound for images, a density for points;
        both with the ODE's function evaluations (``log_prob_stats``)."""
        c = self.config
        how = f"{c.log_prob_trace} trace, {c.log_prob_solver}"
        if self.is_image:
            return dict(likelihood="bound", log_prob_stats=True,
                        likelihood_kind=f"uniform dequantization bound, {what} ({how})")
        return dict(likelihood="exact", log_prob_stats=True,
                    likelihood_kind=f"{what} density ({how})")

    def _ode_options(self, num_steps, trace) -> dict:
        """The likelihood ODE's keywords: ``num_steps`` and ``trace`` (None: the config's),
        ``solver``, ``rtol``, ``atol`` from ``log_prob_solver``, ``_rtol``, ``_atol``."""
        c = self.config
        return dict(trace=trace or c.log_prob_trace,
                    num_steps=c.log_prob_steps if num_steps is None else num_steps,
                    solver=c.log_prob_solver, rtol=c.log_prob_rtol, atol=c.log_prob_atol)

    # ----------------------------------------------------------------- data
    def labels(self, batch: dict):
        """The labels of a batch (class-conditional models), else None."""
        return cnd.labels_of(batch, None, self.config.num_classes)

    def dequantized(self, data, rng: jax.Array):
        """(x [B, ...], log-volume [B]): images x = 2 (k + u) / L - 1 with u ~ U[0, 1)^D and
        D log 2 - D log L; points as they are and 0."""
        if not self.is_image:
            data = jnp.asarray(data, jnp.float32)
            return data, jnp.zeros(data.shape[0])
        u = batch_draw(jax.random.uniform, rng, data.shape)
        y, log_det = bj.dequantize_forward(data, u, self.config.num_levels)
        return 2.0 * y - 1.0, log_det + self.num_dims * math.log(2.0)

    def to_x(self, batch: dict, rng: jax.Array) -> jax.Array:
        """Training data x [B, ...]: dequantized images (bin centres when not
        ``dequantize``), points as they are."""
        data = batch[self.config.data_key]
        if self.is_image and not self.config.dequantize:
            y, _ = bj.dequantize_forward(data, 0.5, self.config.num_levels)
            return 2.0 * y - 1.0
        return self.dequantized(data, rng)[0]

    def from_x(self, x: jax.Array) -> jax.Array:
        """x -> uint8 levels clip(floor((x + 1) L / 2), 0, L - 1) (points: x)."""
        if not self.is_image:
            return x
        return bj.dequantize_inverse(0.5 * (x + 1.0), self.config.num_levels)

    # -------------------------------------------------------------- network
    def network(self, params, x, t, y, *, train: bool = False, rng=None) -> jax.Array:
        """The raw network output at inputs x [B, ...], times t [B] in [0, 1], labels y."""
        rngs = {"dropout": device_key(rng)} if train and rng is not None else None
        return self.net.apply(params["net"], x, TIME_SCALE * t, y, train=train, rngs=rngs)

    def guided(self, fn, x, t, y, w):
        """fn(x, t, y) guided: (1 + w) fn(x, t, y) - w fn(x, t, null), one call on [x; x]
        with [y; null] (fn(x, t, None) for an unconditional model)."""
        if y is None:
            return fn(x, t, None)
        both = fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                  jnp.concatenate([y, jnp.full_like(y, self.null_class)]))
        out_c, out_u = jnp.split(both, 2)
        return cnd.guided(out_c, out_u, w)

    def train_labels(self, batch: dict, rng: jax.Array):
        """The batch's labels, each dropped to the null class with p = ``label_dropout``."""
        y = self.labels(batch)
        if y is not None and self.config.label_dropout > 0:
            y = cnd.drop_condition(rng, y, self.null_class, self.config.label_dropout)
        return y

    def per_example_ode(self, fn, x, y, rng):
        """fn(x_b, y_b, key) -> a pytree of [1] arrays evaluated example by example (``vmap``)
        when labels are given: the likelihood ODEs of :mod:`genjax.core.ode` take the
        divergence of each example separately, so a velocity closed over a batch of labels
        cannot be used there. Without labels: fn(x, None, rng) on the whole batch."""
        if y is None:
            return fn(x, None, rng)
        keys = jax.random.split(rng, x.shape[0])
        return jax.vmap(lambda xi, yi, k: jax.tree.map(lambda a: a[0], fn(xi[None], yi[None], k))
                        )(x, y, keys)

    # ------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        n = batch[self.config.data_key].shape[0]
        x = jnp.zeros((n,) + self.x_shape)
        return {"net": self.net.init(rng, x, jnp.zeros((n,)), self.labels(batch))}

    def _defaults(self, num_steps, guidance_scale):
        c = self.config
        return (c.sample_steps if num_steps is None else num_steps,
                c.guidance_scale if guidance_scale is None else guidance_scale)

    # ------------------------------------------------- conditional sampling
    def sample_x(self, params, rng, num_samples: int, cond=None, *, num_steps=None,
                 guidance_scale=None, after_step=None, **options) -> jax.Array:
        """The continuous x [N, ...] that :meth:`sample` quantizes (a family's sampler, with
        ``after_step(x, t_next, i)`` passed to the core sampler)."""
        raise NotImplementedError

    def known_at(self, x_known: jax.Array, t, z: jax.Array) -> jax.Array:
        """A draw of the path's marginal at time t given the data x_known, with noise z."""
        raise NotImplementedError

    def inpaint(self, params, rng, data, mask, cond=None, *, num_steps=None,
                guidance_scale=None, **options):
        """Fill the entries of ``data`` (uint8 images [N, H, W, C] or points [N, D]) where
        ``mask`` is 0 (1 = known; broadcastable to ``data``): the family's sampler runs as in
        :meth:`sample`, and after every step the known entries are replaced by a draw of the
        path's marginal at the time reached given the known data (:meth:`known_at`, fresh
        noise each step), so the sampler generates only the rest; after the last step they
        are the data itself, so known entries come back unchanged. The replacement method
        of Song et al. (2021, appendix I); ``options`` go to :meth:`sample_x`.

        The replacement alone does not sample the conditional law: the generated part only
        sees the known one through noise, and (tested on a correlated Gaussian) ends between
        the marginal and the conditional. A score model's predictor-corrector sampler
        (``sampler = "pc"``, a few ``corrector_steps``) does: its Langevin moves at each time
        sample the generated part given the noised known part, which becomes the data as
        t -> 0."""
        x_known = self.data_to_x(data)
        mask = jnp.broadcast_to(jnp.asarray(mask, x_known.dtype), x_known.shape)
        x = self._replaced(params, rng, x_known, mask, None, cond, num_steps, guidance_scale,
                           options)
        return self.from_x(x)

    def colorize(self, params, rng, gray, cond=None, *, num_steps=None, guidance_scale=None,
                 **options):
        """RGB images [N, H, W, 3] whose channel mean is ``gray`` (uint8 [N, H, W] or
        [N, H, W, 1], the model's levels), for a model of RGB images: inpainting in the
        orthonormal colour basis M = [(1, 1, 1) / sqrt 3; (1, -1, 0) / sqrt 2;
        (1, 1, -2) / sqrt 6], in which the first coordinate, sqrt(3) times the channel mean,
        is known and the other two are generated (Song et al., 2021, appendix I). Since M is
        orthogonal, the path's noise is isotropic in either basis."""
        if not self.is_image or self.x_shape[-1] != 3:
            raise ValueError(f"colorize needs a model of RGB images, this one makes "
                             f"{self.x_shape}")
        gray = jnp.asarray(gray)
        if gray.ndim == 4:
            gray = gray[..., 0]
        if gray.shape[1:] != self.x_shape[:2]:
            raise ValueError(f"colorize: gray images of shape {self.x_shape[:2]} expected, "
                             f"got {gray.shape[1:]}")
        g = self.data_to_x(gray[..., None])
        x_known = jnp.concatenate([math.sqrt(3.0) * g, jnp.zeros_like(g), jnp.zeros_like(g)],
                                  axis=-1)
        mask = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), x_known.shape)
        x = self._replaced(params, rng, x_known, mask, COLOR_BASIS, cond, num_steps,
                           guidance_scale, options)
        return self.from_x(x)

    def data_to_x(self, data) -> jax.Array:
        """Images at their bin centres 2 (k + 1/2) / L - 1; points as they are."""
        if not self.is_image:
            return jnp.asarray(data, jnp.float32)
        return 2.0 * bj.dequantize_forward(data, 0.5, self.config.num_levels)[0] - 1.0

    def _replaced(self, params, rng, x_known, mask, basis, cond, num_steps, guidance_scale,
                  options):
        """x from the sampler with the known part (``mask`` = 1, in the channel basis
        ``basis`` when given) replaced after every step; see :meth:`inpaint`."""
        num_steps, _ = self._defaults(num_steps, guidance_scale)
        k_known, k_sample = jax.random.split(rng)
        rotate = (lambda x: x) if basis is None else (lambda x: x @ basis.T)
        back = (lambda x: x) if basis is None else (lambda x: x @ basis)

        def after_step(x, t_next, i):
            z = jax.random.normal(jax.random.fold_in(k_known, i), x.shape, x.dtype)
            known = jnp.where(i == num_steps - 1, x_known, self.known_at(x_known, t_next, z))
            return back(mask * known + (1.0 - mask) * rotate(x))

        return self.sample_x(params, k_sample, x_known.shape[0], cond, num_steps=num_steps,
                             guidance_scale=guidance_scale, after_step=after_step, **options)
