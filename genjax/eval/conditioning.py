"""Does a conditional sampler follow its condition? Classifier accuracy on its samples.

    python -m genjax.eval.conditioning --workdir runs/token_prior_digits [--guidance 0,1,3]
    python -m genjax.eval.conditioning --workdir runs/text2img_shapes [--per_condition 20]
        [--temperature 0.7]

For every condition c a model is asked for ``per_condition`` samples x ~ p(x | c),
and a classifier trained on real data reads them back; the accuracy is the
fraction read as c, against chance 1 / (number of values):

- digits, class-conditional or captioned ("a handwritten seven"): the 10 classes,
  read by the shipped digits classifier (:mod:`genjax.eval.digits_features`);
- shapes captioned "a large square in the top left": all 3 x 2 x 4 = 24 captions,
  each attribute (shape, size, quadrant) read by a classifier on image moments
  fitted on the ``shapes`` train split (:func:`shape_classifier`, seconds; its
  accuracies on the real test split are reported beside), and ``all``, the fraction
  with every attribute right (chance 1/24).

The model is any genjax model whose ``sample(params, rng, n, cond, guidance_scale=w)``
takes labels [n] (class) or caption tokens [n, L] (text) as ``cond``.
"""

from __future__ import annotations

import functools
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np

from genjax.data import captions as cap


def shape_attributes(factors: np.ndarray) -> dict[str, np.ndarray]:
    """factors [N, F] of ``shapes`` -> the captioned attributes, each int [N]: ``shape``
    (0..2), ``size`` (0 small, 1 large), ``position`` (2 * bottom + right, 0..3)."""
    shape, size, vertical, horizontal = cap._shape_parts(np.asarray(factors))
    return {"shape": np.asarray(shape), "size": np.asarray(size),
            "position": np.asarray(2 * vertical + horizontal)}


def shape_prompts() -> tuple[list[str], dict[str, np.ndarray]]:
    """All 24 shape captions and their attributes (``shape_attributes`` names)."""
    prompts, attrs = [], {"shape": [], "size": [], "position": []}
    for s, z, v, h in itertools.product(range(3), range(2), range(2), range(2)):
        prompts.append(f"a {cap.SIZE_NAMES[z]} {cap.SHAPE_NAMES[s]} in the "
                       f"{cap.VERTICAL_NAMES[v]} {cap.HORIZONTAL_NAMES[h]}")
        for name, value in zip(attrs, (s, z, 2 * v + h)):
            attrs[name].append(value)
    return prompts, {k: np.array(v) for k, v in attrs.items()}


def shape_features(images) -> np.ndarray:
    """float64 [N, 9] image moments of uint8 [N, 32, 32, 1] images, binarized at 128:
    area m00; centroid (x, y); the eigenvalues l1 >= l2 of the second central moments
    and l2 / l1 (1 for a square at any rotation, 0.36 for the 1 : 0.6 ellipse); Hu's
    third-order invariants 3 and 4, scale-normalised (zero for shapes symmetric under
    a half turn, as squares and ellipses are, not the heart); and m00 / (l1 + l2).
    All but the centroid are invariant to rotation, which the captions do not name."""
    x = (np.asarray(images)[..., 0] >= 128).astype(np.float64)
    yy, xx = np.mgrid[0:x.shape[1], 0:x.shape[2]] + 0.5
    m00 = x.sum((1, 2)) + 1e-9
    cx, cy = (x * xx).sum((1, 2)) / m00, (x * yy).sum((1, 2)) / m00
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]

    def mu(p, q):
        return (x * dx ** p * dy ** q).sum((1, 2)) / m00

    mu20, mu02, mu11 = mu(2, 0), mu(0, 2), mu(1, 1)
    half_trace = (mu20 + mu02) / 2
    disc = np.sqrt(np.maximum(half_trace ** 2 - (mu20 * mu02 - mu11 ** 2), 0))
    l1, l2 = half_trace + disc, half_trace - disc
    mu30, mu03, mu21, mu12 = mu(3, 0), mu(0, 3), mu(2, 1), mu(1, 2)
    hu3 = (mu30 - 3 * mu12) ** 2 + (3 * mu21 - mu03) ** 2
    hu4 = (mu30 + mu12) ** 2 + (mu21 + mu03) ** 2
    scale = (l1 + l2) ** 3 + 1e-9
    return np.stack([m00, cx, cy, l1, l2, l2 / (l1 + 1e-9), hu3 / scale, hu4 / scale,
                     m00 / (l1 + l2 + 1e-9)], axis=1)


class ShapeClassifier:
    """Reads the captioned attributes of shape images: one gradient-boosted tree
    classifier per attribute on :func:`shape_features`."""

    def __init__(self, classifiers: dict):
        self.classifiers = classifiers

    def predict(self, images) -> dict[str, np.ndarray]:
        """uint8 [N, 32, 32, 1] -> {attribute: int [N]} (``shape_attributes`` names)."""
        features = shape_features(images)
        return {name: clf.predict(features) for name, clf in self.classifiers.items()}


@functools.lru_cache(maxsize=4)
def shape_classifier(num_train: int = 8000, max_iter: int = 100, seed: int = 0):
    """(:class:`ShapeClassifier`, {attribute: accuracy on the real test split}), fitted on
    the first ``num_train`` images of the ``shapes`` train split with ``max_iter`` boosting
    rounds (seconds)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from genjax.data.shapes import shapes

    train, test = shapes("train"), shapes("test")
    features = shape_features(train["image"][:num_train])
    fitted = {}
    for name, y in shape_attributes(train["factors"]).items():
        fitted[name] = HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed)
        fitted[name].fit(features, y[:num_train])
    classifier = ShapeClassifier(fitted)
    read, truth = classifier.predict(test["image"]), shape_attributes(test["factors"])
    return classifier, {name: float(np.mean(read[name] == truth[name])) for name in read}


def shape_prompt_accuracy(images, attrs: dict[str, np.ndarray], classifier) -> dict:
    """Per attribute, and ``all`` at once, the fraction of ``images`` [N, 32, 32, 1] whose
    classifier reading equals ``attrs`` (int [N] each)."""
    read = classifier.predict(images)
    right = {name: read[name] == attrs[name] for name in read}
    out = {name: float(r.mean()) for name, r in right.items()}
    out["all"] = float(np.mean(np.all(list(right.values()), axis=0)))
    return out


def _kind(model) -> tuple[str, str]:
    """(conditioning, what reads it): ("class" | "text", "digits" | "shapes")."""
    caps = model.capabilities
    conditioning = caps.conditioning
    if conditioning == "text":
        return "text", model.config.captions
    if conditioning == "class" and caps.num_classes == 10:
        return "class", "digits"
    raise ValueError("conditioning accuracy needs a class-conditional digits model or a "
                     f"captioned (text) model; this one is conditioned on {conditioning!r}")


def conditioning_accuracy(model, params, rng, guidance_scales=(0.0,), per_condition: int = 50,
                          classifier=None, **sample_kwargs) -> dict:
    """Accuracy of ``model``'s samples for every condition, per guidance weight (module
    docstring): ``{"w=0": {...}, "w=1": ...}`` plus the chance levels (and, for shapes, the
    classifier's accuracy on real test images). One compile serves every weight.
    ``classifier``: for shapes, the pair :func:`shape_classifier` returns (default: its
    default fit). ``sample_kwargs`` (e.g. ``temperature``) go to ``model.sample``."""
    conditioning, reader = _kind(model)
    if reader == "digits":
        labels = np.repeat(np.arange(10), per_condition)
        cond = labels if conditioning == "class" else cap.tokenize(
            [f"a handwritten {cap.DIGIT_NAMES[y]}" for y in labels], model.text_len)
        out = {"chance": 0.1}
    else:
        prompts, attrs = shape_prompts()
        cond = np.repeat(cap.tokenize(prompts, model.text_len), per_condition, axis=0)
        attrs = {k: np.repeat(v, per_condition) for k, v in attrs.items()}
        classifier, real = classifier or shape_classifier()
        out = {"chance": {"shape": 1 / 3, "size": 1 / 2, "position": 1 / 4, "all": 1 / 24},
               "classifier_accuracy_on_real": real}
    if "guidance_scale" in model.capabilities.sample_options:
        sample = jax.jit(lambda p, key, c, w: model.sample(p, key, len(c), c, guidance_scale=w,
                                                           **sample_kwargs))
    elif all(w == 0 for w in guidance_scales):
        sample = jax.jit(lambda p, key, c, w: model.sample(p, key, len(c), c, **sample_kwargs))
    else:
        raise ValueError("this model's sampler takes no guidance_scale: use --guidance 0")
    for w in guidance_scales:
        images = np.asarray(sample(params, rng, jnp.asarray(cond), jnp.float32(w)))
        if reader == "digits":
            from genjax.eval import digits_features

            probs = digits_features.features_and_probs(images, model.config.num_levels)[1]
            out[f"w={w:g}"] = {"class_accuracy": float(np.mean(probs.argmax(1) == labels))}
        else:
            out[f"w={w:g}"] = shape_prompt_accuracy(images, attrs, classifier)
        out[f"w={w:g}"]["num_samples"] = len(images)
    return out


def main(argv=None) -> None:
    import argparse

    from genjax.train.trainer import load_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--guidance", default="0,1,3", help="comma-separated weights w")
    parser.add_argument("--per_condition", type=int, default=None,
                        help="samples per condition (default: 50 digits, 20 shapes)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature (default: the model's)")
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _, model, state, _ = load_run(args.workdir, args.step)
    per = args.per_condition or (50 if _kind(model)[1] == "digits" else 20)
    kwargs = {} if args.temperature is None else {"temperature": args.temperature}
    result = conditioning_accuracy(model, state.ema_params, jax.random.key(args.seed),
                                   [float(w) for w in args.guidance.split(",")], per, **kwargs)
    result = {"workdir": args.workdir, "step": int(state.step), **result}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
