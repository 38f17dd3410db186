"""InceptionV3 of the FID literature in Flax, for FID / KID / IS / precision-recall on natural
images: the 2048-d pool3 features and the classifier logits.

The architecture is the one TensorFlow's FID code and ``pytorch-fid`` use
(Heusel et al. 2017; the 2015-12-05 Inception graph), which differs from the
stock torchvision InceptionV3: average pools in the A, C and first E blocks do
not count the zero padding, the last E block (``Mixed_7c``) pools its fourth
branch with a 3x3 *max* pool, and the classifier has 1008 outputs (1000
ImageNet classes plus 8 unused ones; ``num_classes`` is configurable).
Every convolution is conv (no bias) -> BatchNorm (eps 1e-3, running
statistics) -> ReLU.

Input: images [B, H, W, C] of any size, C in {1, 3}; uint8 in [0, 255] or float
in [0, 1]. Grayscale is replicated to 3 channels; images are resized bilinearly
(half-pixel centres, no antialiasing: ``F.interpolate(..., mode="bilinear",
align_corners=False)``) to 299x299 and mapped to [-1, 1] by x -> 2x - 1, as
pytorch-fid does. ``apply(params, images)`` returns (pool3 [B, 2048],
logits [B, num_classes]); the Inception Score uses softmax(logits).

Weights
-------
Nothing is downloaded. Standard FID numbers need the FID Inception weights that
pytorch-fid publishes as ``pt_inception-2015-12-05-6726825d.pth`` (a port of
TensorFlow's ``inception-2015-12-05.tgz``; pytorch-fid fetches it from its
GitHub release ``fid_weights``). Fetch that file once on a machine with
internet access, then convert it (needs PyTorch for this step only)::

    python -m genjax.eval.inception --convert pt_inception-2015-12-05-6726825d.pth \\
        --out inception_fid.msgpack

The converter maps the state_dict onto this module's variables: conv weights
OIHW -> kernels HWIO, BatchNorm ``weight``/``bias`` -> ``params`` scale/bias and
``running_mean``/``running_var`` -> ``batch_stats`` mean/var, ``fc.weight``
[K, 2048] -> Dense kernel [2048, K]; ``num_batches_tracked`` and ``AuxLogits.*``
are dropped. Flax module names mirror the PyTorch ones
(``Mixed_6b/branch7x7_2/conv/kernel`` <-> ``Mixed_6b.branch7x7_2.conv.weight``).
The result is a flax msgpack file that ``load_inception_params`` reads and
checks against the module's own variable shapes; ``genjax eval --real DIR
--fake DIR --features inception --inception_weights inception_fid.msgpack``
uses it.
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util
from tqdm import tqdm

INPUT_SIZE = 299
FEATURE_DIM = 2048
FID_NUM_CLASSES = 1008


class InceptionWeightsError(ValueError):
    """A weights file or state_dict that does not fit the FID InceptionV3."""


class BasicConv(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3, running statistics) -> ReLU."""

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel_size, self.strides,
                    padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x):
    """3x3 stride-1 average over the valid (unpadded) pixels, as TensorFlow pools."""
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, name="branch1x1")(x)
        b5 = BasicConv(48, name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + C_in."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), (2, 2), name="branch3x3")(x)
        bd = BasicConv(64, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), (2, 2), name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 and 7x1) -> 768 channels."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, name="branch1x1")(x)
        b7 = BasicConv(c7, name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 512 + C_in."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), (2, 2), name="branch3x3_2")(b3)
        b7 = BasicConv(192, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), (2, 2), name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs -> 2048 channels. ``pool="max"`` is the FID
    graph's last block (``Mixed_7c``), which pools its fourth branch with a 3x3 max pool."""

    pool: str = "avg"

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, name="branch1x1")(x)
        b3 = BasicConv(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate([
            BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
            BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv(448, name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([
            BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
            BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        if self.pool == "max":
            pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        bp = BasicConv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """x float [B, 299, 299, 3] in [-1, 1] -> (pool3 [B, 2048], logits [B, num_classes])."""

    num_classes: int = FID_NUM_CLASSES

    @nn.compact
    def __call__(self, x):
        x = BasicConv(32, (3, 3), (2, 2), name="Conv2d_1a_3x3")(x)              # 149
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)                      # 147
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)                                                 # 73
        x = BasicConv(80, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)                     # 71
        x = _max_pool_3x3_s2(x)                                                 # 35
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)                                      # 17
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                         ("Mixed_6e", 192)):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)                                      # 8
        x = InceptionE("avg", name="Mixed_7b")(x)
        x = InceptionE("max", name="Mixed_7c")(x)
        pool3 = x.mean(axis=(1, 2))
        return pool3, nn.Dense(self.num_classes, name="fc")(pool3)


def preprocess(images) -> jax.Array:
    """uint8 [B, H, W, C] in [0, 255] or float in [0, 1], C in {1, 3} -> float32
    [B, 299, 299, 3] in [-1, 1]: gray replicated, bilinear resize (no antialias), 2x - 1."""
    x = jnp.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [B, H, W, 1 or 3], got shape {x.shape}")
    x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
    x = jnp.broadcast_to(x, x.shape[:3] + (3,))
    if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        x = jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), "bilinear",
                             antialias=False)
    return 2.0 * x - 1.0


def _flat(tree) -> dict:
    """{"params/Mixed_5b/branch1x1/conv/kernel": array, ...}"""
    return traverse_util.flatten_dict(tree, sep="/")


def _num_classes(params) -> int:
    return params["params"]["fc"]["kernel"].shape[-1]


@jax.jit
def apply(params, images):
    """(pool3 float32 [B, 2048], logits float32 [B, K]) of images [B, H, W, C] (see
    ``preprocess``); K is read from the weights (1008 for the FID weights)."""
    return InceptionV3(_num_classes(params)).apply(params, preprocess(images))


@functools.lru_cache(maxsize=4)
def variable_shapes(num_classes: int = FID_NUM_CLASSES):
    """The module's variables as ``jax.ShapeDtypeStruct`` leaves (no compile, no weights)."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(InceptionV3(num_classes).init, jax.random.key(0), x)


def init_params(seed: int = 0, num_classes: int = FID_NUM_CLASSES):
    """Random variables (He-normal kernels, identity BatchNorm), built in numpy without a
    compile: for tests and shape checks; features mean nothing without the FID weights."""
    rng = np.random.default_rng(seed)
    flat = {}
    for key, spec in _flat(variable_shapes(num_classes)).items():
        shape = tuple(spec.shape)
        if key.endswith("/kernel"):
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif key.endswith(("/scale", "/var")):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        flat[key] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


def features_and_probs(images, params, batch_size: int | None = None, progress: bool = True):
    """(pool3 features float64 [N, 2048], softmax(logits) float64 [N, K]) of images
    [N, H, W, C], ``batch_size`` (default min(50, N)) at a time, every batch padded to it:
    one compiled shape."""
    n = len(images)
    batch_size = batch_size or max(1, min(50, n))
    feats, probs = [], []
    starts = range(0, n, batch_size)
    for i in tqdm(starts, desc="inception features", unit="batch", leave=False,
                  disable=not progress or len(starts) < 2):
        batch = np.asarray(images[i:i + batch_size])
        m = len(batch)
        if m < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - m,) + batch.shape[1:],
                                                    batch.dtype)])
        pool3, logits = apply(params, batch)
        feats.append(np.asarray(pool3, np.float64)[:m])
        probs.append(np.asarray(jax.nn.softmax(logits), np.float64)[:m])
    return np.concatenate(feats), np.concatenate(probs)


# ---------------------------------------------------------------------------------------------
# Weight files.

def check_variables(variables, num_classes: int = FID_NUM_CLASSES, where: str = "weights"):
    """Raise InceptionWeightsError naming the first key of ``variables`` that is missing,
    has the wrong shape, or is unexpected, against the module's own variables."""
    expected = _flat(variable_shapes(num_classes))
    got = _flat(variables) if isinstance(variables, dict) else {}
    if not got:
        raise InceptionWeightsError(f"{where}: not a tree of Inception variables")
    for key, spec in expected.items():
        if key not in got:
            raise InceptionWeightsError(f"{where}: missing key {key} (expected shape "
                                        f"{tuple(spec.shape)})")
        shape = tuple(np.shape(got[key]))
        if shape != tuple(spec.shape):
            raise InceptionWeightsError(f"{where}: {key} has shape {shape}, the FID "
                                        f"InceptionV3 expects {tuple(spec.shape)}")
    for key in got:
        if key not in expected:
            raise InceptionWeightsError(f"{where}: unexpected key {key}")


def save_inception_params(path: str, params) -> None:
    """Write the variables ({"params", "batch_stats"}) as a flax msgpack file."""
    tree = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(tree))


def load_inception_params(path: str, num_classes: int | None = None):
    """Variables from a msgpack file written by ``save_inception_params`` (or the converter),
    checked key by key against the module; ``num_classes`` defaults to the file's."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several types on foreign bytes
        raise InceptionWeightsError(
            f"{path} is not a flax msgpack weights file ({type(err).__name__}); convert a "
            "pytorch-fid .pth with `python -m genjax.eval.inception --convert FILE.pth "
            "--out FILE.msgpack`") from None
    if not isinstance(tree, dict):
        raise InceptionWeightsError(f"{path}: not a tree of Inception variables")
    if num_classes is None:
        fc = tree.get("params", {}).get("fc", {}) if isinstance(tree.get("params"), dict) else {}
        kernel = fc.get("kernel") if isinstance(fc, dict) else None
        num_classes = kernel.shape[-1] if getattr(kernel, "ndim", 0) == 2 else FID_NUM_CLASSES
    check_variables(tree, num_classes, where=path)
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


# ---------------------------------------------------------------------------------------------
# PyTorch (pytorch-fid) state_dict <-> Flax variables.

_BN_STATS = {"mean": "running_mean", "var": "running_var"}
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_PREFIXES = ("AuxLogits.",)


def _torch_name(key: str) -> str:
    """'params/Mixed_5b/branch1x1/conv/kernel' -> 'Mixed_5b.branch1x1.conv.weight'."""
    collection, *modules, leaf = key.split("/")
    if collection == "batch_stats":
        leaf = _BN_STATS[leaf]
    elif leaf in ("kernel", "scale"):
        leaf = "weight"
    return ".".join(modules + [leaf])


def _to_torch_layout(key: str, value: np.ndarray) -> np.ndarray:
    if key.endswith("/kernel"):
        return value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T   # HWIO->OIHW
    return value


def _from_torch_layout(key: str, value: np.ndarray) -> np.ndarray:
    if key.endswith("/kernel"):
        return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T   # OIHW->HWIO
    return value


def to_torch_state_dict(variables) -> dict:
    """Flax variables -> {pytorch-fid state_dict name: numpy array in PyTorch layout}."""
    return {_torch_name(k): _to_torch_layout(k, np.asarray(v))
            for k, v in _flat(variables).items()}


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):                  # a torch.Tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, np.float32)


def from_torch_state_dict(state_dict, num_classes: int | None = None):
    """pytorch-fid FID Inception state_dict (tensors or numpy arrays) -> Flax variables.

    ``num_classes`` defaults to the rows of ``fc.weight`` (1008 for the FID weights).
    Raises InceptionWeightsError naming the first missing, misshapen or unknown entry."""
    if num_classes is None:
        num_classes = (np.shape(state_dict["fc.weight"])[0] if "fc.weight" in state_dict
                       else FID_NUM_CLASSES)
    flat = {}
    for key, spec in _flat(variable_shapes(num_classes)).items():
        name = _torch_name(key)
        if name not in state_dict:
            raise InceptionWeightsError(f"state_dict has no {name} (for {key})")
        value = _from_torch_layout(key, _numpy(state_dict[name]))
        if value.shape != tuple(spec.shape):
            raise InceptionWeightsError(
                f"state_dict {name} has shape {np.shape(state_dict[name])}, which does not "
                f"map to {key} {tuple(spec.shape)}")
        flat[key] = value
    known = {_torch_name(k) for k in flat}
    for name in state_dict:
        if name not in known and not name.endswith(_IGNORED_SUFFIXES) \
                and not name.startswith(_IGNORED_PREFIXES):
            raise InceptionWeightsError(f"unexpected state_dict entry {name}: not the "
                                        "pytorch-fid FID InceptionV3")
    return traverse_util.unflatten_dict(flat, sep="/")


def convert(pth_path: str, out_path: str) -> dict:
    """Convert pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` to a msgpack file."""
    try:
        import torch
    except ImportError:
        raise SystemExit("converting a .pth file needs PyTorch (pip install torch); "
                         "nothing else in genjax does") from None
    if not os.path.isfile(pth_path):
        raise InceptionWeightsError(f"no such file: {pth_path}")
    try:
        state_dict = torch.load(pth_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types on a foreign or pickled-model file
        raise InceptionWeightsError(f"cannot read {pth_path} as a PyTorch state_dict: "
                                    f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]             # a checkpoint that wraps the weights
    if not isinstance(state_dict, dict):
        raise InceptionWeightsError(f"{pth_path} holds a {type(state_dict).__name__}, not a "
                                    "state_dict")
    variables = from_torch_state_dict(state_dict)
    save_inception_params(out_path, variables)
    return variables


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m genjax.eval.inception",
        description="Convert pytorch-fid's FID Inception weights "
                    "(pt_inception-2015-12-05-6726825d.pth) to a flax msgpack file.")
    parser.add_argument("--convert", required=True, metavar="PTH",
                        help="pytorch-fid state_dict file")
    parser.add_argument("--out", required=True, metavar="MSGPACK", help="output weights file")
    args = parser.parse_args(argv)
    try:
        variables = convert(args.convert, args.out)
    except (OSError, InceptionWeightsError) as err:
        raise SystemExit(f"error: {err}") from None
    count = sum(np.size(v) for v in jax.tree.leaves(variables))
    print(f"wrote {args.out}: {count:,} values, {_num_classes(variables)} classes")


if __name__ == "__main__":
    main()
