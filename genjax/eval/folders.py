"""FID / KID / IS / precision-recall between two folders of images.

    genjax eval --real DIR --fake DIR [--features auto|digits|inception]
                [--inception_weights FILE] [--out eval.json]

Each folder holds 8-bit PNG or JPEG files (0..255; not recursive, other files
ignored), all of one height and width; grayscale and colour files may mix
(gray is then replicated to RGB; alpha is dropped). Two feature networks:

* ``digits``: the shipped digits classifier (:mod:`genjax.eval.digits_features`):
  64-d features, 10 classes; grayscale images, resized to 16x16.
* ``inception``: the FID InceptionV3 (:mod:`genjax.eval.inception`): pool3
  features (2048-d) and 1008 logits; needs the converted FID weights file.

``auto`` picks ``digits`` when every image of both folders is grayscale (one
channel, or three equal ones) and at most 16x16, ``inception`` otherwise.

Metrics, in the chosen feature space (``genjax.core.metrics``): FID, KID (100
subsets of ``min(1000, N_real, N_fake)``), Inception Score of the fake set
(softmax of the network's logits, 10 splits), improved precision/recall (k = 3;
on random subsets of at most ``PR_MAX_SAMPLES`` per set, whose k-NN distance
matrices fit in memory). Features of the real folder are cached under
``$GENJAX_CACHE/features`` (default ``~/.cache/genjax``), keyed by a hash of
its file names, sizes and modification times and of the feature network's
weights file, so a changed folder or network never reads stale features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from genjax.core import metrics
from genjax.eval import digits_features, inception
from genjax.eval.samples import cache_dir

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# PIL modes of more than 8 bits per channel: refused rather than clipped to 8 bits.
WIDE_MODES = {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit",
              "I": "32-bit integer", "F": "32-bit float"}
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
FEATURES = ("auto", "digits", "inception")
MIN_IMAGES = 4                 # precision/recall with k = 3 needs more than 3 per set
DIGITS_MAX_SIZE = 16
PR_MAX_SAMPLES = 5000
KID_SUBSETS = 100
BATCH_SIZE = {"digits": 512, "inception": 50}
_CACHE_VERSION = "1"


class FolderError(ValueError):
    """A folder that cannot be evaluated (missing, empty, mixed sizes, unreadable file)."""


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """The image files of one folder (sorted names) and their common shape."""

    path: str
    files: tuple[str, ...]
    height: int
    width: int
    channels: int              # 1 when every file is grayscale, else 3

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}"

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """uint8 [n, H, W, C] of files[start:stop]."""
        names = self.files[start:stop]
        out = np.empty((len(names), self.height, self.width, self.channels), np.uint8)
        mode = "L" if self.channels == 1 else "RGB"
        for i, name in enumerate(names):
            with Image.open(os.path.join(self.path, name)) as image:
                out[i] = np.asarray(image.convert(mode)).reshape(out.shape[1:])
        return out

    def fingerprint(self) -> str:
        """sha256 of the file names, sizes and modification times."""
        digest = hashlib.sha256()
        for name in self.files:
            stat = os.stat(os.path.join(self.path, name))
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def scan_folder(path: str, min_images: int = MIN_IMAGES) -> ImageFolder:
    """Read the headers of every PNG/JPEG in ``path``; FolderError if the folder is missing,
    holds fewer than ``min_images`` images, an unreadable one, or images of different sizes."""
    if not os.path.exists(path):
        raise FolderError(f"no such folder: {path}")
    if not os.path.isdir(path):
        raise FolderError(f"not a folder: {path}")
    files = tuple(sorted(name for name in os.listdir(path)
                         if name.lower().endswith(IMAGE_EXTENSIONS)
                         and os.path.isfile(os.path.join(path, name))))
    if not files:
        raise FolderError(f"{path} holds no PNG or JPEG images")
    if len(files) < min_images:
        raise FolderError(f"{path} holds {len(files)} images; the metrics need at least "
                          f"{min_images}")
    first_size, gray = None, True
    for name in files:
        try:
            with Image.open(os.path.join(path, name)) as image:
                size, mode = image.size, image.mode
        except (OSError, UnidentifiedImageError) as err:
            raise FolderError(f"cannot read {os.path.join(path, name)}: {err}") from None
        if mode in WIDE_MODES:
            raise FolderError(
                f"{os.path.join(path, name)} has {WIDE_MODES[mode]} pixels (PIL mode {mode!r}); "
                "the metrics read 8-bit images: save the images as 8-bit PNG or JPEG (for "
                "16-bit data, scale by 255 / 65535 and round) so that no level is clipped")
        if first_size is None:
            first_size = (size, name)
        elif size != first_size[0]:
            (w0, h0), name0 = first_size
            raise FolderError(f"images in {path} differ in size: {name0} is {h0}x{w0} "
                              f"(HxW), {name} is {size[1]}x{size[0]}")
        gray = gray and mode in GRAY_MODES
    (width, height), _ = first_size
    return ImageFolder(path, files, height, width, 1 if gray else 3)


def _all_gray(images: np.ndarray) -> bool:
    return images.shape[-1] == 1 or bool(
        (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all())


def _looks_like_digits(folder: ImageFolder) -> bool:
    if max(folder.height, folder.width) > DIGITS_MAX_SIZE:
        return False
    return folder.channels == 1 or _all_gray(folder.read())     # small: read them all


def choose_features(real: ImageFolder, fake: ImageFolder, features: str = "auto") -> str:
    """``features`` if given, else digits for small grayscale folders, inception otherwise."""
    if features not in FEATURES:
        raise ValueError(f"--features must be one of {FEATURES}, got {features!r}")
    if features != "auto":
        return features
    return "digits" if _looks_like_digits(real) and _looks_like_digits(fake) else "inception"


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(folder: ImageFolder, network: str, params, progress: bool):
    """(features float64 [N, d], class probabilities float64 [N, K]) of every image."""
    batch_size = min(BATCH_SIZE[network], len(folder))
    chunk = batch_size * (20 if network == "inception" else 1)
    feats, probs = [], []
    starts = range(0, len(folder), chunk)
    for start in tqdm(starts, desc=f"{network} features of {folder.path}", unit="chunk",
                      leave=False, disable=not progress or network == "digits" or len(starts) < 2):
        images = folder.read(start, start + chunk)
        if network == "digits":
            if not _all_gray(images):
                raise FolderError(f"the digits feature network needs grayscale images; "
                                  f"{folder.path} holds colour ones (use --features inception)")
            f, p = digits_features.features_and_probs(images[..., :1], 256)
        else:
            f, p = inception.features_and_probs(images, params, batch_size, progress=False)
        feats.append(f)
        probs.append(p)
    return np.concatenate(feats), np.concatenate(probs)


def reference_features(folder: ImageFolder, network: str, params, weights_path: str,
                       progress: bool = True) -> np.ndarray:
    """Features [N, d] (float64) of ``folder``, cached on disk by folder and network hash."""
    key = hashlib.sha256("\n".join([_CACHE_VERSION, network, _file_sha256(weights_path),
                                    folder.fingerprint()]).encode()).hexdigest()[:24]
    path = os.path.join(cache_dir(), "features", f"folder_{network}_{key}.npz")
    if os.path.exists(path):
        return np.load(path)["features"].astype(np.float64)
    features, _ = _extract(folder, network, params, progress)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, features=features.astype(np.float32))
    os.replace(tmp, path)
    return features


def _network(features: str, inception_weights: str | None, why: str = ""):
    """(params, weights file) of the chosen network; clear errors for missing weights."""
    if features == "digits":
        return digits_features.load_params(), digits_features.WEIGHTS
    if not inception_weights:
        raise ValueError(
            f"{why}inception features need --inception_weights FILE: the FID InceptionV3 "
            "weights, "
            "converted once from pytorch-fid's pt_inception-2015-12-05-6726825d.pth with "
            "`python -m genjax.eval.inception --convert FILE.pth --out FILE.msgpack` "
            "(nothing is downloaded)")
    if not os.path.isfile(inception_weights):
        raise ValueError(f"--inception_weights {inception_weights}: no such file")
    return inception.load_inception_params(inception_weights), inception_weights


def _subset(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(x) <= size:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))]


def evaluate_folders(real: str, fake: str, features: str = "auto",
                     inception_weights: str | None = None, progress: bool = True) -> dict:
    """Every metric of the fake folder against the real one (see the module doc)."""
    real_folder, fake_folder = scan_folder(real), scan_folder(fake)
    network = choose_features(real_folder, fake_folder, features)
    why = "" if features != "auto" else (
        f"the images ({real_folder.shape}, {fake_folder.shape}) are not all grayscale and at "
        f"most {DIGITS_MAX_SIZE}x{DIGITS_MAX_SIZE}, so --features=auto chose inception; ")
    params, weights_path = _network(network, inception_weights, why)
    real_feats = reference_features(real_folder, network, params, weights_path, progress)
    fake_feats, fake_probs = _extract(fake_folder, network, params, progress)
    n, m = len(real_feats), len(fake_feats)
    kid, kid_std = metrics.kernel_inception_distance(
        real_feats, fake_feats, num_subsets=KID_SUBSETS, subset_size=min(1000, n, m))
    is_mean, is_std = metrics.inception_score(fake_probs, num_splits=min(10, m))
    precision, recall = metrics.precision_recall(_subset(real_feats, PR_MAX_SAMPLES, 0),
                                                 _subset(fake_feats, PR_MAX_SAMPLES, 1), k=3)
    results = {
        "real": real, "fake": fake, "features": network,
        "num_real": n, "num_fake": m, "real_shape": real_folder.shape,
        "fake_shape": fake_folder.shape,
        f"fid_{network}": metrics.fid_from_features(real_feats, fake_feats),
        f"kid_{network}": kid, f"kid_{network}_std": kid_std,
        f"is_{network}": is_mean, f"is_{network}_std": is_std,
        "precision": precision, "recall": recall,
    }
    if max(n, m) > PR_MAX_SAMPLES:
        results["precision_recall_subset"] = PR_MAX_SAMPLES
    return results
