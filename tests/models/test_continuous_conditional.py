"""Conditional sampling of the continuous-time families by replacement (inpainting and
colorization): with the exact score / velocity of a correlated Gaussian plugged in, the known
entries come back unchanged and the generated ones follow the Gaussian conditional law; the
colorized images have the given channel mean; both families share the code
(:class:`genjax.models.continuous.ContinuousModel`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import make_config
from genjax.models.continuous import COLOR_BASIS, TIME_SCALE

RHO = 0.9
SIGMA = np.array([[1.0, RHO], [RHO, 1.0]], np.float32)       # data N(0, SIGMA)


class ExactGaussianNet:
    """The network output that makes the family's score / velocity exact for N(0, SIGMA)
    data (score: s = -net / std at the input c_in x; flow: v = net)."""

    def __init__(self, model, cov):
        self.model, self.cov = model, jnp.asarray(cov)

    def apply(self, variables, x_in, t_in, y=None, *, train=False, rngs=None):
        t = t_in / TIME_SCALE
        d = self.cov.shape[0]
        flat = x_in.reshape(x_in.shape[0], -1)
        eye = jnp.eye(d)
        if hasattr(self.model, "sde"):                          # a score model
            a, std = self.model.sde.marginal_prob(jnp.ones((flat.shape[0], 1)), t)
            x = flat * jnp.sqrt(a ** 2 + std ** 2)
            cov_t = a[:, :, None] ** 2 * self.cov + std[:, :, None] ** 2 * eye
            score = -jnp.linalg.solve(cov_t, x[..., None])[..., 0]
            return (-std * score).reshape(x_in.shape)
        tt = t[:, None, None]
        cov_t = (1 - tt) ** 2 * eye + tt ** 2 * self.cov
        cross = tt * self.cov - (1 - tt) * eye                 # Cov(x_1 - x_0, x_t)
        v = cross @ jnp.linalg.solve(cov_t, flat[..., None])
        return v[..., 0].reshape(x_in.shape)


def exact_model(name, cov=SIGMA, shape=(2,), **kwargs):
    point = len(shape) == 1
    base = dict(image_shape=shape, num_levels=0 if point else 256,
                data_key="point" if point else "image", mlp_hidden=8, mlp_blocks=1,
                base_channels=8, channel_mults=(1,), attention_resolutions=())
    model = models.build(make_config(name, "toy2d/moons" if point else "shapes_color",
                                     model_kwargs={**base, **kwargs}).model)
    model.net = ExactGaussianNet(model, cov)
    return model


CASES = [("score_sde", dict(sampler="pc", sample_steps=400, corrector_steps=3)),
         pytest.param("score_sde", dict(sampler="em", sample_steps=400),
                      marks=pytest.mark.slow),
         pytest.param("score_sde", dict(sampler="ode", sample_steps=100),
                      marks=pytest.mark.slow),
         ("flow_matching", dict(sampler="heun", sample_steps=50))]


def _inpaint(model, n=2000):
    data = np.tile(np.array([[1.5, 0.0]], np.float32), (n, 1))
    mask = np.array([1.0, 0.0], np.float32)
    return np.asarray(jax.jit(lambda key: model.inpaint({"net": {}}, key, data, mask))(
        jax.random.key(0)))


@pytest.mark.parametrize("name,kwargs", CASES, ids=["score-pc", "score-em", "score-ode",
                                                    "flow-heun"])
def test_inpainting_a_correlated_gaussian(name, kwargs):
    """x_1 = 1.5 known: x_2 | x_1 ~ N(rho 1.5, 1 - rho^2) for unit variances. The known entry
    comes back exactly. Predictor-corrector samples the conditional (its Langevin moves at
    each time sample x_2 given the noised x_1, which becomes x_1 itself as t -> 0); the
    replacement alone (Euler-Maruyama, the ODE samplers) is pulled toward x_1 but stays
    between the marginal mean 0 and the conditional one (measured: about 0.94 for EM and
    0.66 for the ODEs, at any step count), the known bias of the replacement method."""
    x = _inpaint(exact_model(name, **kwargs))
    np.testing.assert_array_equal(x[:, 0], 1.5)
    mean, var = RHO * 1.5, 1 - RHO ** 2
    if kwargs["sampler"] == "pc":
        assert abs(x[:, 1].mean() - mean) < 0.06, x[:, 1].mean()
        assert abs(x[:, 1].var() / var - 1) < 0.25, x[:, 1].var()
    else:
        assert 0.4 < x[:, 1].mean() < mean - 0.2, x[:, 1].mean()


def test_colorization_keeps_the_channel_mean_and_needs_rgb():
    """RGB data with correlated channels; colorize(gray) gives images whose channel mean is
    the gray image (up to the rounding of each channel to its level)."""
    cov = np.kron(np.eye(4), 0.5 * np.eye(3) + 0.5).astype(np.float32) * 0.1   # 2x2 pixels
    model = exact_model("score_sde", cov=cov, shape=(2, 2, 3), sampler="em", sample_steps=100)
    np.testing.assert_allclose(COLOR_BASIS @ COLOR_BASIS.T, np.eye(3), atol=1e-6)
    gray = np.random.default_rng(0).integers(60, 200, (16, 2, 2)).astype(np.uint8)
    out = np.asarray(jax.jit(lambda key: model.colorize({"net": {}}, key, gray))(
        jax.random.key(1)))
    assert out.shape == (16, 2, 2, 3) and out.dtype == np.uint8
    assert np.max(np.abs(out.astype(float).mean(-1) - gray)) <= 1.0
    assert out.std(-1).mean() > 0           # the colours are generated, not copied
    with pytest.raises(ValueError, match="RGB"):
        exact_model("score_sde").colorize({"net": {}}, jax.random.key(0), gray)


def test_annealed_langevin_cannot_inpaint():
    model = exact_model("score_sde", sde="ve", sampler="annealed_langevin", sample_steps=3)
    with pytest.raises(ValueError, match="annealed_langevin"):
        model.inpaint({"net": {}}, jax.random.key(0), np.zeros((2, 2), np.float32),
                      np.array([1.0, 0.0]))
