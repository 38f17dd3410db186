"""``genjax train | sample | eval``.

    genjax train  --config configs/vae_digits.py --workdir runs/vae [--config.a.b=value ...]
                  [--coordinator_address HOST:PORT --num_processes N --process_id I]
                  [--distributed]     (multi-process: see genjax/train/distributed.py)
    genjax sample --workdir runs/vae --num 64 --out grid.png [--cond 3] [--checkpoint best]
    genjax sample --workdir runs/text2img_shapes --prompt "a large heart in the top left"
                  [--temperature T] [--top_k K] [--guidance W] [--truncation PSI]
    genjax sample --workdir runs/score_vp_guided --cond 3 --classifier_scale 2
    genjax sample --workdir runs/sr3_digits [--aug_level S]   # a cascade: base_workdir
    genjax sample --workdir runs/dcgan_digits --invert DIR [--invert_steps N] [--out FILE]
    genjax eval   --workdir runs/vae [--split test] [--checkpoint best|latest|STEP]
    genjax eval   --real DIR --fake DIR [--features auto|digits|inception]
                  [--inception_weights FILE] [--out eval.json]
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (train).", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, samples.")
flags.DEFINE_integer("num", 64, "Number of samples (sample).")
flags.DEFINE_string("out", None, "Output file: the PNG of `sample` (default: "
                    "WORKDIR/samples/sample.png); the JSON of `eval --real/--fake` (default: "
                    "eval.json).")
flags.DEFINE_integer("cond", None, "Class label 0..K-1 of a class-conditional model (sample). "
                     "Without it a conditional model samples every condition in turn: "
                     "classes 0, 1, ..., K-1, 0, ..., or its dataset's captions in turn.")
flags.DEFINE_string("prompt", None, "Caption for text-conditioned models (sample), e.g. "
                    "\"a handwritten three\".")
flags.DEFINE_float("temperature", None, "Sampling temperature of models that take one (sample: "
                   "flows, token prior); default: the model's, 1.")
flags.DEFINE_integer("top_k", None, "Keep the k most likely tokens at each step (sample: token "
                     "prior); default: all.")
flags.DEFINE_float("guidance", None, "Classifier-free guidance weight w (sample: conditional "
                   "diffusion and token prior); default: the model's.")
flags.DEFINE_float("classifier_scale", None, "Classifier guidance scale gamma (sample: a score "
                   "model with a noise classifier, config.model.classifier_workdir); default: "
                   "the model's.")
flags.DEFINE_float("aug_level", None, "Noise-augmentation level s in [0, 1] of the low-res "
                   "input of a super-resolution model (sample); default: the model's "
                   "sampling_aug_level.")
flags.DEFINE_float("truncation", None, "Truncation psi of a StyleGAN (sample): w = w_avg + "
                   "psi (w - w_avg); default: the model's, 1 (none).")
flags.DEFINE_string("invert", None, "sample: a folder of PNG/JPEG images to invert with the "
                    "run's generator (GANs); writes originals and reconstructions side by side "
                    "to --out and prints their MSE and PSNR.")
flags.DEFINE_integer("invert_steps", 300, "Optimizer steps of --invert.")
flags.DEFINE_string("checkpoint", None, "Checkpoint to load (sample, eval): best (the best "
                    "validation, kept when trained with eval.validation_every), latest, or a "
                    "step number; default: latest.")
flags.DEFINE_integer("step", None, "Checkpoint step to load (sample, eval): the same as "
                     "--checkpoint STEP.")
flags.DEFINE_integer("seed", 0, "Sampling / evaluation seed.")
flags.DEFINE_string("split", None, "Evaluation split (default: config.eval.split).")
flags.DEFINE_string("real", None, "eval: folder of real PNG/JPEG images (instead of --workdir).")
flags.DEFINE_string("fake", None, "eval: folder of generated PNG/JPEG images, against --real.")
flags.DEFINE_enum("features", "auto", ["auto", "digits", "inception"],
                  "eval --real/--fake feature network: digits (the shipped digits classifier; "
                  "grayscale, resized to 16x16), inception (FID InceptionV3; needs "
                  "--inception_weights), or auto: digits when every image is grayscale and at "
                  "most 16x16, inception otherwise.")
flags.DEFINE_string("inception_weights", None,
                    "FID InceptionV3 weights (.msgpack) made by `python -m "
                    "genjax.eval.inception --convert pt_inception-2015-12-05-6726825d.pth "
                    "--out FILE`.")

flags.DEFINE_string("coordinator_address", None, "train on several processes (hosts): "
                    "HOST:PORT of process 0, the same for every process; also "
                    "$JAX_COORDINATOR_ADDRESS. Needs training.parallel = mesh or fsdp.")
flags.DEFINE_integer("num_processes", None, "train: number of processes; also "
                     "$GENJAX_NUM_PROCESSES.")
flags.DEFINE_integer("process_id", None, "train: this process's index, 0..N-1; also "
                     "$GENJAX_PROCESS_ID.")
flags.DEFINE_bool("distributed", False, "train: jax.distributed.initialize() with JAX's cluster "
                  "detection (Cloud TPU pods, SLURM, Open MPI, Kubernetes).")

# command -> (one line, its flags, an example)
COMMANDS = {
    "train": ("train a config in a workdir; rerunning the same command resumes",
              ("config", "workdir", "coordinator_address", "num_processes", "process_id",
               "distributed"),
              "genjax train --config configs/vae_digits.py --workdir runs/vae_digits "
              "[--config.training.num_steps=500 --config.model.beta=2.0 ...]"),
    "sample": ("draw samples of a trained run into a PNG grid",
               ("workdir", "num", "out", "cond", "prompt", "temperature", "top_k", "guidance",
                "classifier_scale", "truncation", "aug_level", "invert", "invert_steps",
                "checkpoint", "step", "seed"),
               "genjax sample --workdir runs/cvae_digits --num 16 --cond 3 --out threes.png"),
    "eval": ("evaluate a run (bits/dim, FID/KID/IS, precision/recall) or two image folders",
             ("workdir", "split", "checkpoint", "step", "seed", "real", "fake", "features",
              "inception_weights", "out"),
             "genjax eval --workdir runs/vae_digits   |   genjax eval --real DIR --fake DIR"),
}


def usage() -> str:
    """``genjax --help``: the commands, one line each."""
    width = max(map(len, COMMANDS))
    lines = ["usage: genjax {" + "|".join(COMMANDS) + "} [--flags]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (text, _, _) in COMMANDS.items()]
    lines += ["", "genjax COMMAND --help shows the flags of COMMAND."]
    return "\n".join(lines)


def command_help(command: str) -> str:
    """``genjax COMMAND --help``: what it does, its flags with their meaning, an example."""
    import textwrap

    text, names, example = COMMANDS[command]
    lines = [f"usage: genjax {command} [--flags]", "", f"{text}.", "", "flags:"]
    for name in names:
        flag = FLAGS[name]
        default = "" if flag.default is None else f" (default: {flag.default})"
        lines.append(f"  --{name}")
        lines += textwrap.wrap(f"{flag.help}{default}", 76, initial_indent="      ",
                               subsequent_indent="      ")
    if command == "train":
        lines += ["  --config.GROUP.KEY=VALUE",
                  "      override any config field (groups: data, model, training, optimizer,",
                  "      eval); an unknown key is an error naming the valid ones"]
    lines += ["", "example:", f"  {example}"]
    return "\n".join(lines)


def _train() -> None:
    from genjax.train.trainer import train_and_evaluate

    if _CONFIG.value is None:
        raise ValueError("genjax train needs --config FILE")
    train_and_evaluate(_CONFIG.value, FLAGS.workdir)


def _initialize_distributed() -> None:
    """Connect to the other processes (before any JAX computation); quiet processes > 0."""
    from genjax.train import distributed

    if distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                              FLAGS.process_id, auto=FLAGS.distributed):
        import jax

        if jax.process_index() != 0:
            logging.getLogger("genjax").setLevel(logging.WARNING)


def _sample() -> None:
    import jax
    import numpy as np

    from genjax.train.images import save_samples
    from genjax.train.trainer import load_run

    from genjax.core.conditioning import check_labels

    config, model, state, info = load_run(FLAGS.workdir, FLAGS.checkpoint, step=FLAGS.step)
    if FLAGS.invert is not None:
        return _invert(model, state.ema_params, info)
    caps = model.capabilities
    cond = None
    if FLAGS.cond is not None:
        if caps.conditioning != "class":
            what = "unconditional" if caps.conditioning == "none" else "text-conditioned"
            hint = " (give --prompt)" if caps.conditioning == "text" else ""
            raise ValueError(f"--cond: model {config.model.name!r} is {what} and takes no "
                             f"class label{hint}")
        check_labels(FLAGS.cond, caps.num_classes, where="--cond")
        cond = np.full((FLAGS.num,), FLAGS.cond, np.int32)
    # Flags passed on to model.sample as keyword arguments, where given.
    kwargs = {}
    for flag, name in (("prompt", "prompt"), ("temperature", "temperature"), ("top_k", "top_k"),
                       ("guidance", "guidance_scale"), ("classifier_scale", "classifier_scale"),
                       ("truncation", "truncation"), ("aug_level", "aug_level")):
        value = getattr(FLAGS, flag)
        if value is None:
            continue
        if name not in caps.sample_options:
            raise ValueError(f"model {config.model.name!r} does not take --{flag}")
        kwargs[name] = value
    sample = functools.partial(model.sample, **kwargs)
    fn = jax.jit(sample, static_argnums=2)
    images = np.asarray(fn(state.ema_params, jax.random.key(FLAGS.seed), FLAGS.num, cond))
    out = FLAGS.out or os.path.join(FLAGS.workdir, "samples", "sample.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_samples(out, images, info.num_levels)
    print(f"wrote {len(images)} samples to {out}")


def _invert(model, params, info) -> None:
    import numpy as np

    from genjax.eval.folders import scan_folder
    from genjax.eval.inversion import invert_images
    from genjax.train.images import save_samples

    images = scan_folder(FLAGS.invert, min_images=1).read()
    if images.shape[-1] != model.config.image_shape[-1] and images.shape[-1] == 3:
        raise ValueError(f"{FLAGS.invert} holds color images but the model makes "
                         f"{model.config.image_shape[-1]}-channel ones")
    result = invert_images(model, params, images, FLAGS.invert_steps, seed=FLAGS.seed)
    pairs = np.stack([images, result.pop("reconstructions")], axis=1).reshape(
        (-1,) + images.shape[1:])
    out = FLAGS.out or os.path.join(FLAGS.workdir, "samples", "inversion.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_samples(out, pairs, info.num_levels)
    result["invert_steps"] = FLAGS.invert_steps
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(result, f, indent=2)
    print(f"inverted {result['num_images']} images in {FLAGS.invert_steps} steps: MSE "
          f"{result['mse']:.2f} (levels), PSNR {result['psnr']:.2f} dB; originals and "
          f"reconstructions side by side in {out}")


def _eval_folders() -> None:
    from genjax.eval.folders import evaluate_folders
    from genjax.eval.report import format_table

    if FLAGS.workdir is not None:
        raise ValueError("give either --workdir (a run) or --real and --fake (folders)")
    if not (FLAGS.real and FLAGS.fake):
        raise ValueError("evaluating folders needs both --real DIR and --fake DIR")
    results = evaluate_folders(FLAGS.real, FLAGS.fake, FLAGS.features, FLAGS.inception_weights)
    print(format_table(results))
    path = FLAGS.out or "eval.json"
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {path}")


def _eval() -> None:
    from genjax.eval.report import evaluate_run, format_table
    from genjax.train.trainer import load_run

    config, model, state, _ = load_run(FLAGS.workdir, FLAGS.checkpoint, step=FLAGS.step)
    results = evaluate_run(config, model, state.ema_params, split=FLAGS.split, seed=FLAGS.seed)
    results["checkpoint_step"] = int(state.step)
    print(format_table(results))
    path = os.path.join(FLAGS.workdir, "eval.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {path}")


def main(argv) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: genjax {{{'|'.join(COMMANDS)}}} [--flags]; got {argv[1:]}")
    folders = argv[1] == "eval" and (FLAGS.real is not None or FLAGS.fake is not None)
    if FLAGS.workdir is None and not folders:
        hint = " (or --real DIR --fake DIR)" if argv[1] == "eval" else ""
        raise app.UsageError(f"--workdir is required{hint}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    logger = logging.getLogger("genjax")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler())
    logger.propagate = False
    from genjax.data import DatasetNotPreparedError
    from genjax.train.checkpoint import CheckpointError
    from genjax.train.trainer import NonFiniteLossError

    try:
        if argv[1] == "train":
            _initialize_distributed()
        {"train": _train, "sample": _sample, "eval": _eval_folders if folders else _eval}[
            argv[1]]()
    except (ValueError, CheckpointError, DatasetNotPreparedError, NonFiniteLossError) as err:
        print(f"genjax {argv[1]}: error: {err}", file=sys.stderr)
        sys.exit(1)


def _config_file(argv) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _missing_override_key(argv) -> str:
    """For an override of a key the config lacks: which key, and the valid ones there."""
    from genjax.configs import load_sibling

    path = _config_file(argv)
    arg = None
    if path and ":" in os.path.basename(path):          # configs/pixelcnn.py:digits16
        path, arg = path.rsplit(":", 1)
    if not path or not os.path.exists(path):
        return f"config file {path!r} not found"
    config = load_sibling(path, os.path.basename(path)[:-3], arg)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, walked = config, "config"
        for key in arg[2:].split("=", 1)[0].split(".")[1:]:
            if not hasattr(node, "keys") or key not in node:
                valid = sorted(node.keys()) if hasattr(node, "keys") else []
                return f"unknown config key {walked}.{key}; valid keys of {walked}: {valid}"
            node, walked = node[key], f"{walked}.{key}"
    return "unknown config key"


def _parse_flags(argv):
    """absl flag parsing with one-line errors instead of tracebacks; ``--help`` per command."""
    asked = any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:])
    if len(argv) == 1 or argv[1] in ("-h", "--help", "-help", "help", "--helpshort"):
        print(usage())
        sys.exit(0 if len(argv) > 1 else 2)
    if asked and argv[1] in COMMANDS:
        print(command_help(argv[1]))
        sys.exit(0)
    try:
        rest = FLAGS(argv)
        if FLAGS["config"].present:
            _CONFIG.value.keys()            # config_flags defers a load failure to here
        return rest
    except flags.Error as err:
        root = err
        while (root.__cause__ or root.__context__) is not None:   # the config's own error
            root = root.__cause__ or root.__context__
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        cause = str(root).splitlines()[0] if root is not err and str(root) else ""
        if cause and cause not in message:
            message = f"{message.rstrip(': ')}: {cause}"
    except (AttributeError, KeyError):  # config_flags: override of a key the config lacks
        try:
            message = _missing_override_key(argv)
        except Exception as err:  # the config file itself does not load
            message = f"config {_config_file(argv)!r} does not load: {err}"
    except Exception as err:  # get_config() raised, or the file does not load
        detail = str(err).strip().splitlines()
        message = f"config {_config_file(argv)!r} does not load: " + " ".join(
            line.strip() for line in detail[-2:] if line.strip())
    print(f"genjax: error: {message}", file=sys.stderr)
    sys.exit(2)


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
