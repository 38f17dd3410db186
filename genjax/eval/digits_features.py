"""A small digits classifier whose penultimate layer is the feature space for
FID / KID / precision-recall on the embedded digit datasets, and whose softmax
gives the Inception Score and the class accuracy of conditional samples.

Its weights ship with the package (``genjax/eval/weights/digits_classifier.msgpack``,
about 100 KB); ``python -m genjax.eval.digits_features --retrain`` rebuilds them
deterministically from the ``digits16`` train split and prints the test accuracy.

Inputs: uint8 images [B, H, W, 1] of any of ``digits`` (8x8, 17 levels),
``digits16`` (16x16, 256 levels) or ``binarized_digits`` (16x16, 2 levels):
scaled to [0, 1] by their levels and resized (bilinear) to 16x16.
"""

from __future__ import annotations

import functools
import hashlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "digits_classifier.msgpack")
FEATURE_DIM = 64


class DigitsClassifier(nn.Module):
    """x float [B, 16, 16, 1] in [0, 1] -> (features [B, 64], logits [B, 10])."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(32, (3, 3))(x))
        h = nn.max_pool(nn.relu(nn.Conv(32, (3, 3))(h)), (2, 2), (2, 2))      # 8x8
        h = nn.max_pool(nn.relu(nn.Conv(64, (3, 3))(h)), (2, 2), (2, 2))      # 4x4
        h = h.reshape(h.shape[0], -1)
        features = nn.relu(nn.Dense(FEATURE_DIM)(h))
        return features, nn.Dense(10)(features)


def preprocess(images, num_levels: int) -> jax.Array:
    """uint8 [B, H, W, 1] with ``num_levels`` levels -> float [B, 16, 16, 1] in [0, 1]."""
    x = jnp.asarray(images, jnp.float32) / (num_levels - 1)
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"digit images must be [B, H, W, 1], got {x.shape}")
    if x.shape[1:3] != (16, 16):
        x = jax.image.resize(x, (x.shape[0], 16, 16, 1), method="bilinear")
    return x


def weights_digest(path: str | None = None) -> str:
    """The first 16 hex digits of the SHA-256 of the weights file (default: ``WEIGHTS``):
    the key of every cache of these weights or of features computed with them."""
    h = hashlib.sha256()
    with open(path or WEIGHTS, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_params():
    """The shipped weights (raises FileNotFoundError with the retrain command if absent);
    read again whenever the file changes (a retrain)."""
    if not os.path.exists(WEIGHTS):
        raise FileNotFoundError(f"{WEIGHTS} is missing: run "
                                "`python -m genjax.eval.digits_features --retrain`")
    return _load_params(WEIGHTS, weights_digest())


@functools.lru_cache(maxsize=2)
def _load_params(path: str, digest: str):
    del digest          # the cache key: a new file is read again
    template = DigitsClassifier().init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
    with open(path, "rb") as f:
        return serialization.from_bytes(template, f.read())


@functools.partial(jax.jit, static_argnums=1)
def _apply(params, num_levels, images):
    return DigitsClassifier().apply(params, preprocess(images, num_levels))


def features_and_probs(images, num_levels: int, batch_size: int = 512, params=None):
    """(features float64 [N, 64], class probabilities float64 [N, 10]) of uint8 images."""
    params = load_params() if params is None else params
    feats, probs = [], []
    for i in range(0, len(images), batch_size):
        f, logits = _apply(params, num_levels, np.asarray(images[i:i + batch_size]))
        feats.append(np.asarray(f, np.float64))
        probs.append(np.asarray(jax.nn.softmax(logits), np.float64))
    return np.concatenate(feats), np.concatenate(probs)


def _augment(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Random shifts by up to 1 pixel (zero fill): x float [B, 16, 16, 1]."""
    out = np.zeros_like(x)
    shifts = rng.integers(-1, 2, size=(len(x), 2))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[sel] = padded[sel, 1 + dy:17 + dy, 1 + dx:17 + dx]
    return out


def train(num_steps: int = 3000, batch_size: int = 128, seed: int = 0):
    """Train on digits16 train (+ the 8x8 and binarized versions); returns (params, test acc)."""
    from genjax.data.digits import binarized_digits, digits, digits16

    sets = [(digits16("train"), 256), (digits("train"), 17), (binarized_digits("train"), 2)]
    x = np.concatenate([np.asarray(preprocess(d["image"], levels)) for d, levels in sets])
    y = np.concatenate([d["label"] for d, _ in sets])
    model = DigitsClassifier()
    params = model.init(jax.random.key(seed), jnp.zeros((1, 16, 16, 1)))
    opt = optax.adamw(optax.cosine_decay_schedule(2e-3, num_steps), weight_decay=1e-4)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            _, logits = model.apply(p, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(seed)
    for _ in range(num_steps):
        idx = rng.integers(0, len(x), batch_size)
        params, opt_state = step(params, opt_state, _augment(rng, x[idx]), y[idx])
    return params, test_accuracy(params)


def test_accuracy(params=None) -> dict:
    """Accuracy on the test split of each digit dataset."""
    from genjax.data.digits import binarized_digits, digits, digits16

    out = {}
    for name, data, levels in (("digits16", digits16, 256), ("digits", digits, 17),
                               ("binarized_digits", binarized_digits, 2)):
        test = data("test")
        _, probs = features_and_probs(test["image"], levels, params=params)
        out[name] = float((probs.argmax(1) == test["label"]).mean())
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retrain", action="store_true", help="retrain and overwrite WEIGHTS")
    args = parser.parse_args()
    if args.retrain:
        params, acc = train()
        os.makedirs(os.path.dirname(WEIGHTS), exist_ok=True)
        with open(WEIGHTS, "wb") as f:
            f.write(serialization.to_bytes(params))
        print(f"wrote {WEIGHTS}")
    print("test accuracy:", test_accuracy())
