"""Masked layers: masks on the kernel, the PixelCNN blind spot and its absence in the gated
stacks, and the transformer's key/value cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core.masks import pixelcnn_mask
from genjax.nn.masked import GatedPixelCNN, MaskedConv, PixelCNN
from genjax.nn.transformer import CausalTransformer
from tests.conftest import perturbed


def _perturb(params, key, scale=0.1):
    return perturbed(params, key, scale)


def test_mask_is_applied_to_the_kernel():
    mask = pixelcnn_mask(3, 2, 4, "A", num_color_groups=2)
    conv = MaskedConv(4, mask)
    x = jnp.ones((1, 5, 5, 2))
    params = conv.init(jax.random.key(0), x)
    grad = jax.grad(lambda p: conv.apply(p, x).sum())(params)["params"]["kernel"]
    # Masked weights get exactly zero gradient, so they stay zero (and carry no signal).
    assert np.all(np.asarray(grad)[mask == 0] == 0)
    assert np.all(np.asarray(grad)[mask == 1] != 0)


def _receptive(net, pixel=(5, 3), size=7):
    x = jax.random.uniform(jax.random.key(0), (3, size, size, 1), minval=-1, maxval=1)
    params = _perturb(net.init(jax.random.key(1), x), jax.random.key(2))
    i, j = pixel
    g = jax.jit(jax.vmap(jax.grad(lambda xi: net.apply(params, xi[None])[0, i, j, 0])))(x)
    return np.abs(np.asarray(g)).sum(0)[..., 0] > 0


def _earlier(size, pixel):
    order = np.arange(size * size).reshape(size, size)
    return order < order[pixel]


def test_pixelcnn_has_a_blind_spot():
    seen = _receptive(PixelCNN(1, features=8, num_layers=2, first_kernel=3, kernel=3))
    assert not np.any(seen & ~_earlier(7, (5, 3)))          # causal
    assert seen[5, 2] and seen[4, 3] and seen[4, 4]         # immediate neighbours
    # (2, 6) is seen but (3, 6) and (4, 5), nearer and earlier, are not: the blind spot.
    assert seen[2, 6] and not seen[3, 6] and not seen[4, 5]


def test_gated_pixelcnn_has_no_blind_spot():
    seen = _receptive(GatedPixelCNN(1, features=8, num_layers=2, first_kernel=3, kernel=3))
    earlier = _earlier(7, (5, 3))
    assert not np.any(seen & ~earlier)
    # Every earlier pixel of the receptive field (rows 2..4 at full width here, and row 5
    # to the left) is seen: no hole above-right.
    window = earlier.copy()
    window[:2] = False
    assert np.all(seen[window])


@pytest.mark.slow
def test_transformer_cache_matches_full_forward():
    net = CausalTransformer(vocab_size=5, out_features=5, max_len=7, dim=16, num_layers=2,
                            num_heads=2, num_classes=3)
    tokens = jax.random.randint(jax.random.key(0), (2, 7), 0, 5)
    label = jnp.array([0, 2])
    params = _perturb(net.init(jax.random.key(1), tokens, label), jax.random.key(2))
    full = net.apply(params, tokens, label)
    cache = net.init_cache(2)
    steps = []
    for t in range(7):
        prev = tokens[:, max(t - 1, 0)]
        out, cache = net.apply(params, prev, t, cache, label, method=CausalTransformer.decode)
        steps.append(out)
    np.testing.assert_allclose(jnp.stack(steps, 1), full, atol=1e-5)
    # Row t depends on tokens < t only, and on the class.
    other = tokens.at[:, 4:].set((tokens[:, 4:] + 1) % 5)
    np.testing.assert_allclose(net.apply(params, other, label)[:, :5], full[:, :5], atol=1e-6)
    assert not np.allclose(net.apply(params, tokens, label[::-1]), full)


@pytest.mark.slow
def test_transformer_dropout_only_in_training_and_still_causal():
    net = CausalTransformer(vocab_size=5, out_features=5, max_len=7, dim=16, num_layers=2,
                            num_heads=2, dropout=0.5)
    tokens = jax.random.randint(jax.random.key(0), (2, 7), 0, 5)
    params = net.init(jax.random.key(1), tokens)
    plain = net.apply(params, tokens)
    # Off by default and in decoding: the cached step reproduces the plain forward.
    out, _ = net.apply(params, tokens[:, 0], 0, net.init_cache(2),
                       method=CausalTransformer.decode)
    np.testing.assert_allclose(out, plain[:, 0], atol=1e-5)

    def train(toks, key):
        return net.apply(params, toks, None, True, rngs={"dropout": key})

    dropped = train(tokens, jax.random.key(2))
    assert not np.allclose(dropped, plain)
    assert not np.allclose(train(tokens, jax.random.key(3)), dropped)
    # Same dropout key: rows t <= 4 still ignore tokens 4.. (the masks are per position).
    other = tokens.at[:, 4:].set((tokens[:, 4:] + 1) % 5)
    np.testing.assert_allclose(train(other, jax.random.key(2))[:, :5], dropped[:, :5], atol=1e-6)
