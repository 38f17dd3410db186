"""Score-based generative models through SDEs (Song et al., 2021), and NCSN (Song & Ermon,
2019) as their variance-exploding special case.

A forward SDE dx = f(x, t) dt + g(t) dw on t in [0, 1] (``sde``: "vp", "subvp" or "ve",
:mod:`genjax.core.sde`) turns data into noise with Gaussian marginals
x_t = a(t) x_0 + std(t) z. A network learns the score s_theta(x, t) ~ grad_x log p_t(x) by
denoising score matching (Vincent, 2011), weighted by lambda(t) = std(t)^2:

    L(theta) = E_{t ~ U(train_eps, 1)} E_{x_0, z} |std(t) s_theta(a x_0 + std z, t) + z|^2,

(:func:`genjax.core.sde.denoising_score_matching_loss`; ``loss`` is its mean per dimension).
The network is the diffusion U-Net for images (a residual MLP for 2-D points) and predicts
the noise: with c_in(t) = 1 / sqrt(a(t)^2 + std(t)^2) (unit variance for unit-scale data; 1
for VP, 1 / sqrt(1 + sigma^2) for VE),

    s_theta(x, t) = -net(c_in(t) x, 1000 t, y) / std(t),

so the loss is |net - z|^2 and a zero network is the score 0.

Sampling from x_1 ~ N(0, prior_std^2 I) to t = ``eps`` (``sampler``), each one ``fori_loop``:
"em" Euler-Maruyama on the reverse SDE dx = [f - g^2 s] dt + g dw_bar, "pc" predictor-
corrector (``corrector_steps`` Langevin moves per step with the signal-to-noise ratio
``snr``), "ode" Heun on the probability-flow ODE dx/dt = f - 1/2 g^2 s, each with
``sample_steps`` steps (a number that may be traced: one compiled sampler serves every count).

NCSN (``sde = "ve"``, ``sampler = "annealed_langevin"``): NCSN's noise-conditional score
network s_theta(x, sigma) at levels sigma_1 > ... > sigma_L is the VE score model at the times
t(sigma) = log(sigma / sigma_min) / log(sigma_max / sigma_min) where sigma(t) = sigma, and its
objective is the same DSM loss (with sigma drawn continuously in place of L levels).
Annealed Langevin dynamics (:func:`genjax.core.langevin.annealed_langevin`) runs
``steps_per_level`` moves x <- x + (alpha_i / 2) s + sqrt(alpha_i) z at each of the
L = ``sample_steps`` geometric levels from sigma_max to sigma_min, alpha_i =
``langevin_step_size`` * sigma_i^2 / sigma_L^2.

Likelihood (:meth:`ScoreSDE.log_prob`): the probability-flow ODE with the instantaneous change
of variables (:func:`genjax.core.sde.ode_log_prob`, exact or Hutchinson trace; fixed-step
RK4, or with ``log_prob_solver`` tsit5 / dopri5 adaptive steps, whose function evaluations
:meth:`ScoreSDE.log_prob_stats` reports and ``genjax eval`` prints as ``log_prob_nfe``) gives
log p_eps(x), the density of the model's marginal at t = ``eps``; for images it is evaluated
at a uniformly dequantized x with the bin's log-volume added (:mod:`genjax.models.continuous`),
a one-sample estimate of a lower bound on the log-probability of the discrete levels
(``capabilities.likelihood = "bound"``); for points the density itself.

Classifier-free guidance: labels are dropped to the null class with ``label_dropout`` in
training; sampling uses s = (1 + w) s_theta(x, t, y) - w s_theta(x, t, null), and without
``cond`` a class-conditional model samples the classes in turn
(:mod:`genjax.core.conditioning`).

Classifier guidance: ``classifier_workdir`` names a trained ``noise_classifier`` run
(:mod:`genjax.models.noise_classifier`, the same image shape); its parameters are loaded when
the model is built and kept frozen in ``params["classifier"]``, and sampling with a label y
uses s + gamma grad_x log p_phi(y | x, t) (gamma = ``classifier_scale``, traced), the score of
p_t(x) p_t(y | x)^gamma: a class-conditional sampler from an unconditional score model (or
both guidances together on a conditional one). The likelihood ignores the classifier.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
from genjax.core import langevin as lg
from genjax.core import sde as sd
from genjax.core.random import batch_draw
from genjax.models.continuous import ContinuousConfig, ContinuousModel
from genjax.models.protocol import (DEFAULT_GROUP, FROZEN, Capabilities, Phase, UpdateRule,
                                    check_batch)

SDES = ("vp", "subvp", "ve")
SAMPLERS = ("em", "pc", "ode", "annealed_langevin")


@dataclasses.dataclass(frozen=True)
class ScoreSDEConfig(ContinuousConfig):
    sde: str = "vp"                 # forward SDE: vp | subvp | ve
    beta_min: float = 0.1           # vp / subvp: beta(t) = beta_min + t (beta_max - beta_min)
    beta_max: float = 20.0
    sigma_min: float = 0.01         # ve: sigma(t) = sigma_min (sigma_max / sigma_min)^t
    sigma_max: float = 50.0
    train_eps: float = 1e-5         # DSM times t ~ U(train_eps, 1)
    eps: float = 1e-3               # samplers and log_prob stop at / start from t = eps
    sampler: str = "em"             # em | pc | ode (Heun) | annealed_langevin (ve: NCSN)
    snr: float = 0.16               # pc: signal-to-noise ratio of the Langevin corrector
    corrector_steps: int = 1        # pc: corrector moves per predictor step
    steps_per_level: int = 5        # annealed_langevin: moves per noise level
    langevin_step_size: float = 2e-5   # annealed_langevin: eps of alpha_i = eps s_i^2 / s_L^2
    classifier_workdir: str = ""    # a trained noise_classifier run: classifier guidance
    classifier_scale: float = 1.0   # gamma of classifier guidance by default

    def __post_init__(self):
        super().__post_init__()
        for name, valid in (("sde", SDES), ("sampler", SAMPLERS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"model.{name} must be one of {list(valid)}, "
                                 f"got {getattr(self, name)!r}")
        if self.sampler == "annealed_langevin" and self.sde != "ve":
            raise ValueError("model.sampler = 'annealed_langevin' (NCSN) needs model.sde = 've'")
        if not 0 < self.beta_min < self.beta_max:
            raise ValueError(f"need 0 < model.beta_min < model.beta_max, got "
                             f"{self.beta_min}, {self.beta_max}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < model.sigma_min < model.sigma_max, got "
                             f"{self.sigma_min}, {self.sigma_max}")
        if not (0 < self.train_eps < 1 and 0 < self.eps < 1):
            raise ValueError("model.train_eps and model.eps must be in (0, 1)")
        if self.corrector_steps < 0 or self.steps_per_level < 1:
            raise ValueError("model.corrector_steps must be >= 0, model.steps_per_level >= 1")
        if self.snr <= 0 or self.langevin_step_size <= 0:
            raise ValueError("model.snr and model.langevin_step_size must be > 0")


def make_sde(config: ScoreSDEConfig):
    """The :mod:`genjax.core.sde` SDE named by ``config.sde`` with its parameters."""
    if config.sde == "ve":
        return sd.VESDE(sigma_min=config.sigma_min, sigma_max=config.sigma_max)
    cls = sd.VPSDE if config.sde == "vp" else sd.SubVPSDE
    return cls(beta_min=config.beta_min, beta_max=config.beta_max)


class ScoreSDE(ContinuousModel):
    """Score SDE model following the genjax protocol; see the module docstring.

    ``params``: ``{"net": ...}``.
    """

    def __init__(self, config: ScoreSDEConfig):
        super().__init__(config)
        self.sde = make_sde(config)
        self.classifier = None
        num_classes = config.num_classes
        options = ("guidance_scale",)
        if config.classifier_workdir:
            self._load_classifier()
            num_classes = self.classifier.num_classes
            options += ("classifier_scale",)
        self.num_classes = num_classes
        self.capabilities = Capabilities(
            **self._likelihood("probability-flow ODE"),
            conditioning="class" if num_classes else "none", num_classes=num_classes,
            param_groups=self.classifier is not None, sample_options=options)

    def _load_classifier(self):
        from genjax.models.pretrained import load_pretrained

        c = self.config
        role = "config.model.classifier_workdir"
        if not self.is_image:
            raise ValueError(f"{role}: classifier guidance is for images")
        self.classifier, params = load_pretrained(c.classifier_workdir, kind="noise_classifier",
                                                  image_shape=c.image_shape, role=role)
        k = self.classifier.num_classes
        if c.num_classes and c.num_classes != k:
            raise ValueError(f"{role}: the classifier has {k} classes, this model "
                             f"num_classes = {c.num_classes}")
        self._classifier_params = {"net": params["net"]}

    def update_rule(self) -> UpdateRule:
        """With a classifier: the score network is trained, the classifier is frozen."""
        return UpdateRule(groups={DEFAULT_GROUP: None, FROZEN: ("classifier",)},
                          phases=(Phase(DEFAULT_GROUP, self.loss),))

    def init(self, rng: jax.Array, batch: dict) -> dict:
        params = super().init(rng, batch)
        if self.classifier is not None:
            params["classifier"] = self._classifier_params
        return params

    # ---------------------------------------------------------------- score
    def score(self, params, x, t, y=None, *, train: bool = False, rng=None) -> jax.Array:
        """s_theta(x, t, y) = -net(c_in(t) x, 1000 t, y) / std(t): x [B, ...], t [B]."""
        a, std = self.sde.marginal_prob(jnp.ones((x.shape[0],) + (1,) * (x.ndim - 1)), t)
        c_in = jax.lax.rsqrt(a ** 2 + std ** 2)
        return -self.network(params, c_in * x, t, y, train=train, rng=rng) / std

    def score_fn(self, params, y=None, guidance_scale=0.0, classifier_scale=0.0):
        """(x, t) -> the guided score, as the samplers of :mod:`genjax.core.sde` take it:
        classifier-free guidance of a class-conditional network
        (:func:`ContinuousModel.guided`, weight ``guidance_scale``), plus, with a classifier,
        gamma grad_x log p_phi(y | x, t) with gamma = ``classifier_scale``
        (:mod:`genjax.models.noise_classifier`)."""
        net_y = y if self.config.num_classes else None

        def score(x, t):
            t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
            s = self.guided(lambda xb, tb, yb: self.score(params, xb, tb, yb),
                            x, t, net_y, guidance_scale)
            if self.classifier is None or y is None or (
                    isinstance(classifier_scale, (int, float)) and classifier_scale == 0):
                return s
            ones = jnp.ones((x.shape[0],) + (1,) * (x.ndim - 1))
            a, std = self.sde.marginal_prob(ones, t)
            return s + classifier_scale * self.classifier.grad_log_prob(
                jax.lax.stop_gradient(params["classifier"]), x, a, std, y)
        return score

    def time_of_sigma(self, sigma):
        """VE: t with sigma(t) = sigma, log(sigma / sigma_min) / log(sigma_max / sigma_min)."""
        c = self.config
        return jnp.log(sigma / c.sigma_min) / math.log(c.sigma_max / c.sigma_min)

    # ------------------------------------------------------------- protocol
    def loss(self, params, batch: dict, rng: jax.Array):
        """Denoising score matching per dimension; ``rng`` splits into (dequantization,
        DSM draws, label dropout, network dropout). Metric ``loss``."""
        c = self.config
        k_x, k_dsm, k_y, k_drop = jax.random.split(rng, 4)
        x0 = self.to_x(batch, k_x)
        y = self.train_labels(batch, k_y)

        def score(x, t):
            return self.score(params, x, t, y, train=True, rng=k_drop)

        # t and z drawn as the core loss draws them from k_dsm, per example through
        # batch_draw: the same numbers on one device, a mesh or pmap
        k_t, k_z = jax.random.split(k_dsm)
        t = batch_draw(jax.random.uniform, k_t, (x0.shape[0],), minval=c.train_eps,
                       maxval=1.0)
        z = batch_draw(jax.random.normal, k_z, x0.shape, x0.dtype)
        per_example_loss = sd.denoising_score_matching_loss(
            self.sde, score, x0, None, eps=c.train_eps, t=t, noise=z)
        loss = jnp.mean(per_example_loss) / self.num_dims
        return loss, {"loss": loss}

    def sample(self, params, rng, num_samples: int, cond=None, *, num_steps=None,
               guidance_scale=None, classifier_scale=None):
        """x_1 from the prior, then ``config.sampler``: uint8 images [N, H, W, C] (points:
        float [N, D]). ``cond``: labels [N] or an int (None: classes in turn);
        ``guidance_scale`` and ``num_steps`` (default ``sample_steps``) may be traced, except
        for annealed_langevin, whose noise levels are an array of length ``num_steps``."""
        return self.from_x(self.sample_x(params, rng, num_samples, cond, num_steps=num_steps,
                                         guidance_scale=guidance_scale,
                                         classifier_scale=classifier_scale))

    def sample_x(self, params, rng, num_samples: int, cond=None, *, num_steps=None,
                 guidance_scale=None, classifier_scale=None, after_step=None) -> jax.Array:
        """The continuous end of :meth:`sample`'s sampler; ``after_step`` goes to it (not
        to annealed Langevin, which has no time grid)."""
        c = self.config
        num_steps, w = self._defaults(num_steps, guidance_scale)
        gamma = c.classifier_scale if classifier_scale is None else classifier_scale
        y = cnd.class_labels(cond, num_samples, self.num_classes)
        k_prior, k_chain = jax.random.split(rng)
        x1 = sd.prior_sampling(self.sde, k_prior, (num_samples,) + self.x_shape)
        score = self.score_fn(params, y, w, gamma)
        if c.sampler == "em":
            return sd.euler_maruyama(self.sde, score, x1, k_chain, num_steps=num_steps,
                                     eps=c.eps, after_step=after_step)
        if c.sampler == "pc":
            return sd.predictor_corrector(self.sde, score, x1, k_chain, num_steps=num_steps,
                                          corrector_steps=c.corrector_steps, snr=c.snr,
                                          eps=c.eps, after_step=after_step)
        if c.sampler == "ode":
            return sd.ode_sample(self.sde, score, x1, num_steps=num_steps, eps=c.eps,
                                 after_step=after_step)
        if after_step is not None:
            raise ValueError("inpainting and colorization need model.sampler em, pc or ode, "
                             "not annealed_langevin")
        sigmas = lg.geometric_sigmas(c.sigma_max, c.sigma_min, num_steps)
        return lg.annealed_langevin(
            lambda xb, sigma: score(xb, self.time_of_sigma(sigma)), x1, k_chain, sigmas,
            steps_per_level=c.steps_per_level, step_size=c.langevin_step_size)

    def known_at(self, x_known, t, z):
        """a(t) x_known + std(t) z: the forward SDE's marginal given the data."""
        mean, std = self.sde.marginal_prob(x_known, t)
        return mean + std * z

    def log_prob(self, params, batch: dict, rng: jax.Array, *, num_steps=None, trace=None):
        """log p in nats per example [B] through the probability-flow ODE (module doc):
        images, log p_eps(x) + D log 2 - D log L at one dequantized x (a lower bound on
        log P(levels) in expectation); points, log p_eps(x). ``trace`` and ``num_steps``
        default to ``log_prob_trace`` and ``log_prob_steps``; the solver is
        ``log_prob_solver`` (rk4, or adaptive tsit5 / dopri5 with ``log_prob_rtol``,
        ``log_prob_atol``)."""
        return self.log_prob_stats(params, batch, rng, num_steps=num_steps, trace=trace)[0]

    def log_prob_stats(self, params, batch: dict, rng: jax.Array, *, num_steps=None,
                       trace=None):
        """(:meth:`log_prob` [B], {"nfe": int32 [B]}): with the evaluations of the score and
        its divergence the ODE solver made for each example (``capabilities.log_prob_stats``;
        :func:`genjax.core.ode.log_prob_with_stats`)."""
        check_batch(self, batch)
        c = self.config
        k_x, k_trace = jax.random.split(rng)
        x, log_volume = self.dequantized(batch[c.data_key], k_x)

        def log_density(xb, yb, key):
            return sd.ode_log_prob_with_stats(self.sde, self.score_fn(params, yb), xb, key,
                                              eps=c.eps, **self._ode_options(num_steps, trace))

        log_q, stats = self.per_example_ode(log_density, x, self.labels(batch), k_trace)
        return log_q + log_volume, stats
