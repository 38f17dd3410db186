"""Flow matching and rectified flow (Lipman et al., 2023; Liu et al., 2023).

Time runs from noise at t = 0 to data at t = 1. A pair (x_0 ~ N(0, I), x_1 data) defines the
conditional path of :mod:`genjax.core.flow_matching`,

    x_t = (1 - (1 - sigma_min) t) x_0 + t x_1,    u_t = x_1 - (1 - sigma_min) x_0,

the straight line of rectified flow (``path = "rectified"``, sigma_min = 0) or the
conditional optimal-transport path (``path = "ot"`` with ``sigma_min``). A velocity network
v_theta(x, t) = net(x, 1000 t, y) (the diffusion U-Net for images, a residual MLP for 2-D
points) is regressed on u_t,

    L(theta) = E_{t ~ U(0, 1), (x_0, x_1)} |v_theta(x_t, t) - u_t|^2

(:func:`genjax.core.flow_matching.flow_matching_loss`; ``loss`` is its mean per dimension),
and samples integrate dx/dt = v_theta from x_0 ~ N(0, I) at t = 0 to t = 1 with
``sample_steps`` Euler or Heun steps (``sampler``), one ``fori_loop`` (the number of steps
may be traced).

Likelihood (:meth:`FlowMatching.log_prob`): the same ODE run backwards from the data with the
divergence (:func:`genjax.core.flow_matching.log_prob`, exact or Hutchinson trace; fixed-step
RK4, or with ``log_prob_solver`` tsit5 / dopri5 adaptive steps, whose function evaluations
:meth:`FlowMatching.log_prob_stats` reports and ``genjax eval`` prints as ``log_prob_nfe``),
log p_1(x) = log N(x_0; 0, I) - int_0^1 div v dt; for images at a uniformly dequantized x with
the bin's log-volume added (:mod:`genjax.models.continuous`): a one-sample estimate of a lower
bound on the log-probability of the discrete levels.

Reflow (rectified flow's second round). A trained model defines a coupling of noise and data,
(x_0, x_1 = ODE_theta(x_0)) (:meth:`FlowMatching.reflow_pairs`); a new flow trained on those
pairs in place of independent ones has straighter paths, so a few Euler steps suffice.
``teacher_workdir`` names a trained ``flow_matching`` run: its EMA parameters are loaded when
the model is built (:func:`genjax.models.pretrained.load_pretrained`) and kept in
``params["teacher"]``, the frozen parameter group, and every training step draws x_0 ~ N(0, I)
and x_1 = ODE_teacher(x_0) (``reflow_steps`` steps of the teacher's sampler, with the
batch's labels after dropout and the teacher's guidance), so the batch gives only its size
and labels. With ``init_from_teacher`` the student starts from the teacher's weights (same
network required), as in Liu et al.

One-step distillation (``distill``, with a teacher): the same loss at t = 0 only,
|v_theta(x_0, 0) - (x_1 - x_0)|^2 on the teacher's pairs, so that one Euler step
x_0 + v_theta(x_0, 0) reproduces the teacher's ODE end x_1 (Liu et al.'s distillation of a
k-rectified flow; the sampler must then be one Euler step).

Minibatch OT coupling (``coupling = "ot"``; Tong et al., 2023; Pooladian et al., 2023): the
batch's noise draws are permuted to the exact assignment minimising sum_i |x_1^i - x_0^i|^2
(:func:`genjax.core.flow_matching.ot_coupling`) before the loss, an approximation of the
optimal-transport plan between N(0, I) and the data law that straightens the marginal paths.
Labels stay with their data x_1. Not with reflow, whose pairs are already coupled.

Classifier-free guidance: labels dropped to the null class with ``label_dropout`` in
training; v = (1 + w) v_theta(x, t, y) - w v_theta(x, t, null) at sampling, and without
``cond`` a class-conditional model samples the classes in turn
(:mod:`genjax.core.conditioning`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
from genjax.core import flow_matching as fm
from genjax.core.random import batch_draw
from genjax.models.continuous import ContinuousConfig, ContinuousModel
from genjax.models.protocol import (DEFAULT_GROUP, FROZEN, Capabilities, Phase, UpdateRule,
                                    check_batch)

PATHS = ("rectified", "ot")
SAMPLERS = ("euler", "heun")
COUPLINGS = ("independent", "ot")


@dataclasses.dataclass(frozen=True)
class FlowMatchingConfig(ContinuousConfig):
    path: str = "rectified"         # rectified (straight line, sigma_min = 0) | ot
    sigma_min: float = 1e-4         # ot: std of the path's end around the data
    sampler: str = "heun"           # euler | heun
    coupling: str = "independent"   # independent | ot (minibatch OT pairing of noise and data)
    teacher_workdir: str = ""       # reflow: a trained flow_matching run to take pairs from
    reflow_steps: int = 0           # reflow: teacher ODE steps per pair (0: its sample_steps)
    init_from_teacher: bool = True  # reflow: start from the teacher's weights
    distill: bool = False           # reflow: train v(x_0, 0) only, for 1-step sampling

    def __post_init__(self):
        super().__post_init__()
        for name, valid in (("path", PATHS), ("sampler", SAMPLERS), ("coupling", COUPLINGS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"model.{name} must be one of {list(valid)}, "
                                 f"got {getattr(self, name)!r}")
        if self.path == "ot" and not 0.0 < self.sigma_min < 1.0:
            raise ValueError(f"model.sigma_min must be in (0, 1) for path 'ot', "
                             f"got {self.sigma_min}")
        if self.coupling == "ot" and self.teacher_workdir:
            raise ValueError("model.coupling 'ot' does not apply to reflow: the teacher's "
                             "pairs (x_0, ODE(x_0)) are already coupled; leave "
                             "model.coupling = 'independent' with model.teacher_workdir")
        if self.distill and not self.teacher_workdir:
            raise ValueError("model.distill trains on a teacher's pairs: set "
                             "model.teacher_workdir")
        if self.distill and (self.sampler != "euler" or self.sample_steps != 1):
            raise ValueError("a distilled flow (model.distill) samples in one Euler step: set "
                             "model.sampler = 'euler' and model.sample_steps = 1")
        if self.reflow_steps < 0:
            raise ValueError(f"model.reflow_steps must be >= 0, got {self.reflow_steps}")

    @property
    def path_sigma_min(self) -> float:
        return self.sigma_min if self.path == "ot" else 0.0


class FlowMatching(ContinuousModel):
    """Flow matching following the genjax protocol; see the module docstring.

    ``params``: ``{"net": ...}``, plus ``{"teacher": ...}`` (frozen) when reflowing.
    """

    def __init__(self, config: FlowMatchingConfig):
        super().__init__(config)
        c = config
        self.teacher = None
        if c.teacher_workdir:
            self._load_teacher()
        self.capabilities = Capabilities(
            **self._likelihood("flow ODE"),
            conditioning="class" if c.num_classes else "none", num_classes=c.num_classes,
            param_groups=self.teacher is not None, sample_options=("guidance_scale",))

    def _load_teacher(self):
        from genjax.models.pretrained import load_pretrained

        c = self.config
        role = "config.model.teacher_workdir"
        self.teacher, params = load_pretrained(c.teacher_workdir, kind="flow_matching",
                                               image_shape=c.image_shape, role=role)
        tc = self.teacher.config
        for name in ("data_key", "num_classes", "num_levels"):
            if getattr(tc, name) != getattr(c, name):
                raise ValueError(f"{role}: the teacher has {name} = {getattr(tc, name)!r}, "
                                 f"this model {getattr(c, name)!r}")
        self._teacher_params = {"net": params["net"]}

    def update_rule(self) -> UpdateRule:
        """Reflow: the student is trained, the teacher is frozen."""
        return UpdateRule(groups={DEFAULT_GROUP: None, FROZEN: ("teacher",)},
                          phases=(Phase(DEFAULT_GROUP, self.loss),))

    # ------------------------------------------------------------- velocity
    def velocity(self, params, x, t, y=None, *, train: bool = False, rng=None) -> jax.Array:
        """v_theta(x, t, y) = net(x, 1000 t, y): x [B, ...], t [B]."""
        return self.network(params, x, t, y, train=train, rng=rng)

    def velocity_fn(self, params, y=None, guidance_scale=0.0):
        """(x, t) -> the guided velocity, as :mod:`genjax.core.flow_matching` takes it."""
        def velocity(x, t):
            t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
            return self.guided(lambda xb, tb, yb: self.velocity(params, xb, tb, yb),
                               x, t, y, guidance_scale)
        return velocity

    def ode(self, params, x0, y, guidance_scale, num_steps, *, after_step=None) -> jax.Array:
        """x_1 from noise x_0 along the guided velocity (``sampler``, ``num_steps`` steps)."""
        return fm.sample(self.velocity_fn(params, y, guidance_scale), x0, num_steps=num_steps,
                         method=self.config.sampler, after_step=after_step)

    def teacher_pairs(self, params, rng, n: int, y):
        """(x_0, x_1 = ODE_teacher(x_0)) with the teacher in ``params["teacher"]``; labels y
        (the null class where dropped) and the teacher's guidance weight."""
        tc = self.teacher.config
        x0 = batch_draw(jax.random.normal, rng, (n,) + self.x_shape)
        teacher = jax.lax.stop_gradient(params["teacher"])
        x1 = self.teacher.ode(teacher, x0, y, tc.guidance_scale,
                              self.config.reflow_steps or tc.sample_steps)
        return x0, jax.lax.stop_gradient(x1)

    # ------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        params = super().init(rng, batch)
        if self.teacher is None:
            return params
        teacher = self._teacher_params
        if self.config.init_from_teacher:
            same = jax.tree.structure(params["net"]) == jax.tree.structure(teacher["net"]) and all(
                a.shape == b.shape for a, b in zip(jax.tree.leaves(params["net"]),
                                                   jax.tree.leaves(teacher["net"])))
            if not same:
                raise ValueError("model.init_from_teacher: the teacher's network differs from "
                                 "this model's (set the same network fields, or "
                                 "init_from_teacher = False)")
            params["net"] = jax.tree.map(jnp.asarray, teacher["net"])
        params["teacher"] = teacher
        return params

    def loss(self, params, batch: dict, rng: jax.Array):
        """Flow matching per dimension; ``rng`` splits into (data: dequantization or the
        teacher's noise, path draws, label dropout, network dropout); with ``coupling`` ot the
        noise draws are permuted to the batch's OT assignment. Metric ``loss``."""
        c = self.config
        k_x, k_fm, k_y, k_drop = jax.random.split(rng, 4)
        y = self.train_labels(batch, k_y)
        if self.teacher is None:
            x0, x1 = None, self.to_x(batch, k_x)
        else:
            x0, x1 = self.teacher_pairs(params, k_x, batch[c.data_key].shape[0], y)

        def velocity(x, t):
            return self.velocity(params, x, t, y, train=True, rng=k_drop)

        # t and x_0 drawn as the core loss draws them from k_fm, per example through
        # batch_draw: the same numbers on one device, a mesh or pmap
        k_t, k_0 = jax.random.split(k_fm)
        t = batch_draw(jax.random.uniform, k_t, (x1.shape[0],), x1.dtype)
        if c.distill:                        # 1-step distillation: the time 0 only
            t = jnp.zeros_like(t)
        if x0 is None:
            x0 = batch_draw(jax.random.normal, k_0, x1.shape, x1.dtype)
            if c.coupling == "ot":
                # the assignment is over the batch the loss sees: under a device mesh, jit
                # with NamedSharding gives the global batch; under pmap each device's share
                x0 = fm.ot_coupling(x0, x1)
        per_example_loss = fm.flow_matching_loss(velocity, x1, None,
                                                 sigma_min=c.path_sigma_min, x0=x0, t=t)
        loss = jnp.mean(per_example_loss) / self.num_dims
        return loss, {"loss": loss}

    def sample(self, params, rng, num_samples: int, cond=None, *, num_steps=None,
               guidance_scale=None):
        """x_0 ~ N(0, I), then the ODE to t = 1: uint8 images [N, H, W, C] (points: float
        [N, D]). ``cond``: labels [N] or an int (None: classes in turn); ``guidance_scale``
        and ``num_steps`` (default ``sample_steps``) may be traced."""
        return self.from_x(self.sample_x(params, rng, num_samples, cond, num_steps=num_steps,
                                         guidance_scale=guidance_scale))

    def sample_x(self, params, rng, num_samples: int, cond=None, *, num_steps=None,
                 guidance_scale=None, after_step=None) -> jax.Array:
        """The continuous end of :meth:`sample`'s ODE; ``after_step`` goes to the sampler."""
        num_steps, w = self._defaults(num_steps, guidance_scale)
        y = cnd.class_labels(cond, num_samples, self.config.num_classes)
        x0 = jax.random.normal(rng, (num_samples,) + self.x_shape)
        return self.ode(params, x0, y, w, num_steps, after_step=after_step)

    def known_at(self, x_known, t, z):
        """(1 - (1 - sigma_min) t) z + t x_known: the conditional path from noise z."""
        return fm.conditional_path(z, x_known, jnp.full(z.shape[:1], t, z.dtype),
                                   self.config.path_sigma_min)[0]

    def reflow_pairs(self, params, rng, n: int, cond=None, *, num_steps=None,
                     guidance_scale=None):
        """(x_0 [n, ...], x_1 [n, ...]): noise and the continuous end of the model's ODE from
        it (what :meth:`sample` would quantize), the coupling reflow trains the next flow on
        (:func:`genjax.core.flow_matching.reflow_pairs`). Labels follow ``cond`` as in
        :meth:`sample`."""
        num_steps, w = self._defaults(num_steps, guidance_scale)
        y = cnd.class_labels(cond, n, self.config.num_classes)
        return fm.reflow_pairs(self.velocity_fn(params, y, w), rng, (n,) + self.x_shape,
                               num_steps=num_steps)

    def log_prob(self, params, batch: dict, rng: jax.Array, *, num_steps=None, trace=None):
        """log p in nats per example [B] through the flow ODE (module doc): images,
        log p_1(x) + D log 2 - D log L at one dequantized x (a lower bound on log P(levels) in
        expectation); points, log p_1(x). ``trace`` and ``num_steps`` default to
        ``log_prob_trace`` and ``log_prob_steps``; the solver is ``log_prob_solver`` (rk4,
        or adaptive tsit5 / dopri5 with ``log_prob_rtol``, ``log_prob_atol``)."""
        return self.log_prob_stats(params, batch, rng, num_steps=num_steps, trace=trace)[0]

    def log_prob_stats(self, params, batch: dict, rng: jax.Array, *, num_steps=None,
                       trace=None):
        """(:meth:`log_prob` [B], {"nfe": int32 [B]}): with the evaluations of the velocity
        and its divergence the ODE solver made for each example
        (``capabilities.log_prob_stats``; :func:`genjax.core.ode.log_prob_with_stats`)."""
        check_batch(self, batch)
        c = self.config
        k_x, k_trace = jax.random.split(rng)
        x, log_volume = self.dequantized(batch[c.data_key], k_x)

        def log_density(xb, yb, key):
            return fm.log_prob_with_stats(self.velocity_fn(params, yb), xb, key,
                                          **self._ode_options(num_steps, trace))

        log_q, stats = self.per_example_ode(log_density, x, self.labels(batch), k_trace)
        return log_q + log_volume, stats
