"""SHA-256 of the parameters (and their EMA) of existing configs after 20 training steps.

``python -m tests.train.config_hashes --write`` records them in
``tests/train/config_hashes.json``; ``tests/train/test_config_hashes.py`` checks that the
trainer still produces the same bits. Each config keeps every setting of its file
(optimizer, schedule, clipping, EMA, losses, data order) except its width and batch size,
shrunk so that all of them train in seconds; ``--full`` hashes the configs as they are
(the slow tier).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import jax
import numpy as np

from genjax.configs import load_sibling, make_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_hashes.json")
NUM_STEPS = 20

# config file[:arg] -> model fields that shrink it (the tiny form).
CONFIGS = {
    "vae_digits": dict(latent_dim=4, channels=(8,), hidden_dim=32),
    "ddpm_digits": dict(base_channels=8, channel_mults=(1,), attention_resolutions=(16,)),
    "ldm_digits": dict(mlp_hidden=32, mlp_blocks=1),
    "vqvae_digits": dict(channels=(8,), num_codes=8, code_dim=4, dead_window=4),
    "token_prior_digits": dict(dim=16, num_layers=1, num_heads=2),
    "text2img_diffusion_shapes": dict(base_channels=8, channel_mults=(1, 2),
                                      attention_resolutions=(16,), num_heads=2, text_dim=16,
                                      text_layers=1, text_heads=2),
    "glow_digits": dict(num_scales=2, steps_per_scale=2, hidden=16),
    "made": dict(hidden_dims=(64,)),
    "pixelcnn": dict(features=8, num_layers=2),
    "row_lstm": dict(features=8, num_layers=1),
    "diagonal_bilstm": dict(features=8, num_layers=1),
    "clip_shapes": dict(embed_dim=8, image_channels=(4, 8), image_hidden=16, text_dim=16,
                        text_layers=1, text_heads=2),
    "clip_digits": dict(embed_dim=8, image_channels=(4, 8), image_hidden=16, text_dim=16,
                        text_layers=1, text_heads=2),
    "sr3_digits": dict(base_channels=8, channel_mults=(1,), attention_resolutions=()),
    "sr3_shapes": dict(base_channels=8, channel_mults=(1,), attention_resolutions=()),
}


def _tiny_pretrained(name: str, workdir: str) -> str:
    """A VAE (for ldm_digits) or VQ-VAE (token_prior_digits) trained 4 steps: the frozen part."""
    model_kwargs = (dict(latent_dim=4, channels=(8,), hidden_dim=32) if name == "vae_digits"
                    else dict(channels=(8,), num_codes=8, code_dim=4, dead_window=2))
    base = load_sibling(os.path.join(ROOT, "configs", "x.py"), name)
    config = make_config(
        base.model.name, base.data.name,
        model_kwargs=dict({k: v for k, v in base.model.items() if k != "name"}, **model_kwargs),
        training=dict(batch_size=8, num_steps=4, log_every=4, checkpoint_every=4,
                      num_sample_images=0, progress=False),
        eval=dict(num_samples=0))
    from genjax.train.trainer import train_and_evaluate

    train_and_evaluate(config, workdir)
    return workdir


def config_for(name: str, tmp: str, *, full: bool = False):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), name)
    config.unlock()
    if not full:
        config.model.update(CONFIGS[name])
        config.training.batch_size = 8
    config.training.update(num_steps=NUM_STEPS, steps_per_call=1, log_every=NUM_STEPS,
                           checkpoint_every=NUM_STEPS, snapshot_every=0, sample_every=0,
                           num_sample_images=0, progress=False)
    if config.model.get("autoencoder_workdir"):
        config.model.autoencoder_workdir = _tiny_pretrained("vae_digits",
                                                            os.path.join(tmp, "vae"))
    if config.model.get("vqvae_workdir"):
        config.model.vqvae_workdir = _tiny_pretrained("vqvae_digits",
                                                      os.path.join(tmp, "vqvae"))
    config.lock()
    return config


def machine_signature() -> str:
    """What the bits depend on besides the code: XLA:CPU compiles for the host CPU (its
    vector width and FMA change float rounding) and each jax release may fuse differently."""
    import platform

    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        model = next((ln.split(":", 1)[1].strip() for ln in lines
                      if ln.startswith("model name")), model)
        flags = set(next((ln.split(":", 1)[1].split() for ln in lines
                          if ln.startswith("flags")), []))
    except OSError:
        pass
    vector = sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                             "avx512_bf16", "avx512_fp16", "amx_tile"})
    return f"{platform.machine()} | {model} | {' '.join(vector)} | jax {jax.__version__}"


def tree_hash(tree) -> str:
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(tree),
                             key=lambda kv: jax.tree_util.keystr(kv[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


# Pretrained sub-models carried frozen in params. Their EMA used to be averaged with
# itself (d p + (1 - d) p, which can move p by an ulp) and is now an exact copy, so the
# EMA hash leaves them out (their params, in the "params" hash, are unchanged).
FROZEN_KEYS = ("autoencoder", "vqvae")


def train_hashes(name: str, *, full: bool = False) -> dict:
    """{"params": sha, "ema_params": sha} of ``name`` after NUM_STEPS steps."""
    from genjax.train.trainer import train_and_evaluate

    with tempfile.TemporaryDirectory() as tmp:
        state = train_and_evaluate(config_for(name, tmp, full=full), os.path.join(tmp, "run"))
        ema = {k: v for k, v in state.ema_params.items() if k not in FROZEN_KEYS}
        return {"params": tree_hash(state.params), "ema_params": tree_hash(ema)}


if __name__ == "__main__":
    full = "--full" in sys.argv
    names = [a for a in sys.argv[1:] if not a.startswith("--")] or list(CONFIGS)
    hashes = {name: train_hashes(name, full=full) for name in names}
    print("hashes:", json.dumps(hashes))
    if "--write" in sys.argv:
        stored = json.load(open(FIXTURE)) if os.path.exists(FIXTURE) else {}
        stored.setdefault("full" if full else "tiny", {}).update(hashes)
        stored["machine"] = machine_signature()
        with open(FIXTURE, "w") as f:
            json.dump(stored, f, indent=2, sort_keys=True)
            f.write("\n")
