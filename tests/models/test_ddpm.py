"""DDPM family through the protocol: sampler compiled once, guidance, inpainting,
the variational bound, points, latent diffusion on a trained VAE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as gdata
from genjax.configs import make_config
from genjax.core import diffusion as dm
from genjax.core import likelihoods as lk
from genjax.core.random import init_key
from genjax.models import build
from tests.conftest import perturbed


def tiny_ddpm_config(dataset="digits16", **model):
    kwargs = dict(image_shape=(16, 16, 1), num_levels=256, num_timesteps=20, base_channels=8,
                  channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
                  num_heads=2, sampler="ddim", sample_steps=5)
    kwargs.update(model)
    return make_config(
        "ddpm", dataset, model_kwargs=kwargs,
        training=dict(batch_size=16, num_steps=4, steps_per_call=1, log_every=2,
                      checkpoint_every=4, num_sample_images=4, progress=False),
        optimizer=dict(learning_rate=1e-3), eval=dict(batch_size=32, num_examples=32))


def _init(model, batch, seed=0):
    return jax.jit(model.init)(init_key(jax.random.key(seed)), batch)


def _perturbed(params, scale=0.05):
    return perturbed(params, jax.random.key(42), scale)


@pytest.fixture(scope="module")
def batch():
    it, _ = gdata.load("digits16", "train", 8, shuffle=False)
    return next(it)


@pytest.fixture(scope="module")
def cond_model(batch):
    model = build(tiny_ddpm_config(num_classes=10).model)
    return model, _perturbed(_init(model, batch))


@pytest.mark.slow
def test_loss_is_finite_and_weighted(batch):
    model = build(tiny_ddpm_config(target="v", loss_weighting="min_snr").model)
    params = _init(model, batch)
    loss, metrics = model.loss(params, batch, jax.random.key(1))
    assert np.isfinite(loss) and loss > 0
    assert not np.isclose(loss, metrics["mse"])        # min-SNR weights differ from 1


def test_conditional_loss_drops_labels_to_the_null_class(cond_model, batch):
    model, params = cond_model
    seen = []
    real_apply = model._apply

    def recording(params, x_t, t, y, **kwargs):
        seen.append(y)                     # the traced labels, returned by the jit below
        return real_apply(params, x_t, t, y, **kwargs)

    @jax.jit
    @jax.vmap
    def loss_and_labels(key):
        seen.clear()
        loss = model.loss(params, batch, key)[0]
        return loss, seen[-1]

    model._apply = recording
    try:
        losses, labels = loss_and_labels(jax.random.split(jax.random.key(5), 20))
    finally:
        model._apply = real_apply
    assert all(np.isfinite(loss) for loss in losses)
    labels = np.asarray(labels)                                # [20, 8]
    dropped = labels == model.null_class
    true = np.broadcast_to(batch["label"], labels.shape)
    np.testing.assert_array_equal(labels[~dropped], true[~dropped])
    assert 0.02 < dropped.mean() < 0.25                        # label_dropout = 0.1


def test_sampler_compiles_once_for_any_steps_eta_and_guidance(cond_model):
    model, params = cond_model
    traces = {"n": 0}
    real_apply = model._apply

    def counting(*args, **kwargs):
        traces["n"] += 1
        return real_apply(*args, **kwargs)

    model._apply = counting
    try:
        fn = jax.jit(model.sample, static_argnums=2)
        labels = jnp.arange(4) % 10
        a = fn(params, jax.random.key(0), 4, labels, num_steps=3, eta=0.0, guidance_scale=0.0)
        b = fn(params, jax.random.key(0), 4, labels, num_steps=7, eta=1.0, guidance_scale=3.0)
        c = fn(params, jax.random.key(0), 4, labels, num_steps=3, eta=0.0, guidance_scale=0.0)
    finally:
        model._apply = real_apply
    assert traces["n"] == 1
    assert a.shape == (4, 16, 16, 1) and a.dtype == jnp.uint8
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_ddim_eta0_is_deterministic_given_x_T(cond_model):
    model, params = cond_model
    x1 = model.sample(params, jax.random.key(0), 2, jnp.array([1, 2]), num_steps=4, eta=0.0)
    # Same x_T (k_x), different chain key: eta = 0 ignores the chain noise.
    k_x, _ = jax.random.split(jax.random.key(0))
    x_T = jax.random.normal(k_x, (2, 16, 16, 1))
    x0 = model._reverse(params, jax.random.key(99), x_T, jnp.array([1, 2]), num_steps=4,
                        eta=0.0, guidance_scale=0.0)
    np.testing.assert_array_equal(x1, model.from_x0(params, x0))


def test_guidance_changes_samples_and_labels_matter(cond_model):
    model, params = cond_model
    key = jax.random.key(3)
    base = model.sample(params, key, 2, jnp.array([1, 1]), guidance_scale=0.0)
    other = model.sample(params, key, 2, jnp.array([7, 7]), guidance_scale=0.0)
    guided = model.sample(params, key, 2, jnp.array([1, 1]), guidance_scale=4.0)
    assert not np.array_equal(base, other)
    assert not np.array_equal(base, guided)


def test_inpaint_keeps_known_pixels(cond_model, batch):
    model, params = cond_model
    image = batch["image"][:3]
    mask = np.zeros((3, 16, 16, 1), np.float32)
    mask[:, :8] = 1.0                              # top half known
    out = model.inpaint(params, jax.random.key(0), image, mask, jnp.array([0, 1, 2]))
    np.testing.assert_array_equal(np.asarray(out)[:, :8], image[:, :8])
    assert not np.array_equal(np.asarray(out)[:, 8:], image[:, 8:])
    full = model.inpaint(params, jax.random.key(0), image, np.ones_like(mask), jnp.zeros(3, int))
    np.testing.assert_array_equal(full, image)


def _two_image_model(sampler, sample_steps, images):
    """A DDPM whose network is replaced by the exact denoiser of the law that puts mass 1/2
    on each of two images x_1, x_2: x0_hat(x_t) = sum_i softmax_i(-|x_t - sqrt(abar_t) x_i|^2
    / 2(1 - abar_t)) x_i."""
    model = build(tiny_ddpm_config(sampler=sampler, sample_steps=sample_steps).model)
    x = lk.to_symmetric(images, 256)
    schedule = model.schedule

    def exact_denoiser(params, x_t, t, y, w):
        abar = schedule.alphas_cumprod[t][:, None]
        d2 = ((x_t.reshape(len(t), 1, -1) - jnp.sqrt(abar)[..., None] * x.reshape(1, 2, -1))
              ** 2).sum(-1)
        weights = jax.nn.softmax(-d2 / (2 * (1 - abar)), axis=-1)          # [N, 2]
        x0 = jnp.einsum("nk,k...->n...", weights, x)
        return x0, dm.predict_eps_from_x0(schedule, x_t, t, x0)

    model._x0_eps = exact_denoiser
    return model


@pytest.mark.parametrize("sampler, steps, floor",
                         [("ddim", 10, (0.8, 0.85)), ("ddpm", 20, (0.8, 0.95))])
def test_inpainted_region_is_consistent_with_the_known_region(sampler, steps, floor):
    """Data: an image A and its negative B, with equal mass. Knowing the top half (or the
    left five columns) of A, the exact conditional completes it with the rest of A. Every
    generated region is the rest of one of the two images, most agree with their known region
    (chance: half), and RePaint resampling (U = 10) brings the agreement closer to one."""
    a = np.random.default_rng(0).integers(0, 256, (16, 16, 1)).astype(np.uint8)
    images = np.stack([a, 255 - a])
    model = _two_image_model(sampler, steps, images)
    which = np.array([0, 1, 1, 0] * 4)
    known = np.zeros((16, 16, 16, 1), np.float32)
    known[::2, :8] = 1.0                                       # top half known
    known[1::2, :, :5] = 1.0                                   # left five columns known
    truth = images[which]
    inpaint = jax.jit(model.inpaint)

    def agreement(mask, resample):
        """Fraction of completions whose generated region is that of the known image."""
        kept = np.broadcast_to(mask, truth.shape).astype(bool)
        agree = []
        for k in range(4):
            out = np.asarray(inpaint(None, jax.random.key(k), truth, mask, eta=1.0,
                                     resample=resample))
            np.testing.assert_array_equal(out[kept], truth[kept])
            for o, keep, j in zip(out, kept, which):
                drawn = [np.array_equal(o[~keep], im[~keep]) for im in images]
                assert sum(drawn) == 1                  # the rest of A or of B, never a blend
                agree.append(drawn[j])
        return np.mean(agree)

    plain, repaint = agreement(known, 1), agreement(known, 10)
    assert plain >= floor[0] and repaint >= floor[1] and repaint >= plain
    assert 0.25 < agreement(0 * known, 1) < 0.75              # nothing known: a coin flip


@pytest.mark.slow
def test_variational_bound_is_finite_and_improves_with_a_better_model(batch):
    model = build(tiny_ddpm_config(num_timesteps=10).model)
    params = _init(model, batch)
    nll = -np.asarray(model.log_prob(params, batch, jax.random.key(1)))
    assert nll.shape == (8,) and np.all(np.isfinite(nll)) and np.all(nll > 0)
    # An untrained zero-output network predicts eps = 0 (x0_hat = x_t / sqrt(ab));
    # a few hundred Adam steps on the same batch must lower the bound.
    import optax

    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(p, s, k):
        g = jax.grad(lambda p: model.loss(p, batch, k)[0])(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for i in range(100):
        params, state = step(params, state, jax.random.key(i))
    trained = -np.asarray(model.log_prob(params, batch, jax.random.key(1)))
    assert trained.mean() < nll.mean()


def test_points_model_samples_points():
    config = tiny_ddpm_config("toy2d/moons", image_shape=(2,), num_levels=0, data_key="point",
                              clip_x0=False, mlp_hidden=16, mlp_blocks=1, sampler="ddpm")
    model = build(config.model)
    it, _ = gdata.load("toy2d/moons", "train", 32)
    params = _init(model, next(it))
    loss, _ = model.loss(params, next(it), jax.random.key(1))
    assert np.isfinite(loss)
    x = model.sample(params, jax.random.key(2), 5)
    assert x.shape == (5, 2) and x.dtype == jnp.float32
    assert model.capabilities.likelihood == "none"
    with pytest.raises(ValueError, match="discrete images"):
        model.log_prob(params, next(it), jax.random.key(3))


@pytest.mark.slow
def test_latent_diffusion_on_a_trained_vae(trained_tiny):
    _, vae_workdir, vae_state = trained_tiny
    config = tiny_ddpm_config("digits", image_shape=(8, 8, 1), num_levels=17,
                              autoencoder_workdir=vae_workdir, clip_x0=False, mlp_hidden=16,
                              mlp_blocks=1)
    model = build(config.model)
    it, _ = gdata.load("digits", "train", 8)
    batch = next(it)
    params = _init(model, batch)
    for a, b in zip(jax.tree.leaves(params["autoencoder"]),
                    jax.tree.leaves(vae_state.ema_params)):
        np.testing.assert_array_equal(a, b)
    grads = jax.grad(lambda p: model.loss(p, batch, jax.random.key(1))[0])(params)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["autoencoder"]))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["net"]))
    x = model.sample(params, jax.random.key(2), 3)
    assert x.shape == (3, 8, 8, 1) and x.dtype == jnp.uint8 and int(x.max()) <= 16


@pytest.mark.slow
def test_variational_bound_equals_an_independent_float64_computation():
    """log_prob against the bound written out in numpy float64 from the betas alone:
    sum_t KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) + the discretized Gaussian decoder
    + KL(q(x_T | x_0) || N(0, I)), with the same noise and the same network outputs."""
    from scipy import stats

    levels, T = 17, 4
    config = tiny_ddpm_config("digits", image_shape=(4, 4, 1), num_levels=levels,
                              num_timesteps=T, channel_mults=(1,), attention_resolutions=(),
                              clip_x0=False, variance="small", sample_steps=2)
    model = build(config.model)
    rng = np.random.default_rng(0)
    images = rng.integers(0, levels, (3, 4, 4, 1)).astype(np.uint8)
    params = _perturbed(_init(model, {"image": images, "label": np.zeros(3, np.int32)}))
    key = jax.random.key(5)
    got = np.asarray(jax.jit(model.log_prob)(params, {"image": images}, key), np.float64)
    apply = jax.jit(model._apply)

    betas = np.asarray(model.schedule.betas, np.float64)
    ab = np.cumprod(1.0 - betas)
    ab_prev = np.append(1.0, ab[:-1])
    x0 = 2.0 * images.astype(np.float64) / (levels - 1) - 1.0
    half_bin = 1.0 / (levels - 1)
    keys = jax.random.split(key, T)
    total = np.zeros(len(images))
    for t in range(T):
        eps = np.asarray(jax.random.normal(keys[t], x0.shape), np.float64)
        x_t = np.sqrt(ab[t]) * x0 + np.sqrt(1 - ab[t]) * eps
        out = apply(params, jnp.asarray(x_t, jnp.float32), jnp.full((3,), t), None)
        eps_hat = np.asarray(out, np.float64)
        x0_hat = (x_t - np.sqrt(1 - ab[t]) * eps_hat) / np.sqrt(ab[t])
        c1 = betas[t] * np.sqrt(ab_prev[t]) / (1 - ab[t])
        c2 = (1 - ab_prev[t]) * np.sqrt(1 - betas[t]) / (1 - ab[t])
        mean_p = c1 * x0_hat + c2 * x_t
        if t == 0:      # decoder: variance beta_tilde_1 (the clipped t = 0 entry)
            var = betas[1] * (1 - ab[0]) / (1 - ab[1])
            sd = np.sqrt(var)
            upper = np.where(images == levels - 1, np.inf, x0 + half_bin)
            lower = np.where(images == 0, -np.inf, x0 - half_bin)
            p = stats.norm.cdf((upper - mean_p) / sd) - stats.norm.cdf((lower - mean_p) / sd)
            total += -np.log(p).reshape(3, -1).sum(1)
        else:
            var = betas[t] * (1 - ab_prev[t]) / (1 - ab[t])
            mean_q = c1 * x0 + c2 * x_t
            total += ((mean_q - mean_p) ** 2 / (2 * var)).reshape(3, -1).sum(1)
    m, v = np.sqrt(ab[-1]) * x0, 1 - ab[-1]
    total += (0.5 * (v + m ** 2 - 1 - np.log(v))).reshape(3, -1).sum(1)
    np.testing.assert_allclose(got, -total, rtol=2e-4)
