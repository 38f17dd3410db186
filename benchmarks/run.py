"""One command for the speed of every family: train steps/s and images/s, the first
step's compile time, sampling images/s and peak memory, per config, with PyTorch twins
side by side.

    python benchmarks/run.py                                  # every family's config
    python benchmarks/run.py --configs vae_digits,pixelcnn --torch
    python benchmarks/run.py --torch --readme benchmarks/README.md   # regenerate the table

Each config is measured in a fresh subprocess (its own compile caches and memory high-water
mark): one untimed train call (compile + first step, reported as ``compile_s``), then
``--steps`` timed steps (stopping early after ``--max_seconds``), then ``model.sample`` of
``--sample_num`` images, compiled once and timed over ``--sample_repeats`` calls. Peak
memory is the process's resident high-water mark on CPU and the device's
``peak_bytes_in_use`` on an accelerator. ``--torch`` (needs ``pip install genjax[bench]``)
times the PyTorch twin of the VAE, the PixelCNN and the digits U-Net
(``benchmarks/torch_models.py``) on the same batch size, with ``--threads`` threads (all
cores by default), and prints the ratio genjax / PyTorch of train steps/s.

Writes the results as JSON (``--out``) and prints a markdown table with the machine, the
versions and the command; ``--readme`` replaces the table between the markers
``<!-- benchmarks/run.py -->`` and ``<!-- /benchmarks/run.py -->`` of that file.
``--set key=value`` overrides a config field for every config (e.g. ``training.batch_size=8``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# One config per family (those that need no other trained run).
DEFAULT_CONFIGS = (
    "vae_digits", "vqvae_digits", "made", "pixelcnn", "gated_pixelcnn", "pixel_transformer",
    "wavenet", "row_lstm", "realnvp_digits", "glow_digits", "ddpm_digits", "score_sde_digits",
    "flow_matching_digits", "ebm_digits", "dcgan_digits", "stylegan_digits",
    "pix2pix_edges2digits",
)
TWINS = ("vae_digits", "pixelcnn", "ddpm_digits")   # with a PyTorch twin (torch_models.py)
BEGIN, END = "<!-- benchmarks/run.py -->", "<!-- /benchmarks/run.py -->"


def load_config(spec: str, overrides: list[str]):
    """``NAME`` or ``NAME:ARG`` of configs/NAME.py, with ``key=value`` overrides."""
    from genjax.configs import load_sibling

    name, _, arg = spec.partition(":")
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), name, arg or None)
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        node, *path = key.split(".")
        target = config
        for part in [node, *path][:-1]:
            target = target[part]
        target[key.split(".")[-1]] = value
    return config


def _peak_memory_mib() -> float:
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_genjax(spec: str, args) -> dict:
    """The measurements of one config, in this process."""
    import jax
    import numpy as np

    from genjax.train import step as step_lib
    from genjax.train.trainer import _next_batches, build_run, initial_state

    config = load_config(spec, args.set)
    model, optimizer, it, info, (tcfg, _, _) = build_run(config)
    k, parallel = tcfg.steps_per_call, tcfg.parallel
    fn = step_lib.make_train_step(model, optimizer, tcfg.ema_decay, parallel, k)
    state = initial_state(config, model, optimizer, info)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    state = step_lib.put_state(state, parallel)

    start = time.perf_counter()
    state, m = fn(state, step_lib.put_batch(_next_batches(it, k), parallel))
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - start

    calls, start = 0, time.perf_counter()
    while calls * k < args.steps and time.perf_counter() - start < args.max_seconds:
        state, m = fn(state, step_lib.put_batch(_next_batches(it, k), parallel))
        jax.block_until_ready(m)
        calls += 1
    train_s = time.perf_counter() - start
    steps = max(calls, 1) * k

    result = {
        "config": spec, "model": config.model.name, "dataset": config.data.name,
        "params": params, "batch_size": tcfg.batch_size, "compile_s": round(compile_s, 2),
        "train_steps": steps, "train_steps_per_s": round(steps / train_s, 2),
        "train_images_per_s": round(steps * tcfg.batch_size / train_s, 1),
        "loss": float(np.asarray(m["loss"]).ravel()[-1]),
    }
    ema = step_lib.get_state(state, parallel).ema_params
    try:
        sample = jax.jit(model.sample, static_argnums=2)
        n = args.sample_num
        start = time.perf_counter()
        jax.block_until_ready(sample(ema, jax.random.key(0), n))
        result["sample_compile_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        for i in range(args.sample_repeats):
            jax.block_until_ready(sample(ema, jax.random.key(i + 1), n))
        result["sample_images_per_s"] = round(
            args.sample_repeats * n / (time.perf_counter() - start), 1)
    except NotImplementedError as e:           # a family without a sampler
        result["sample_images_per_s"] = None
        result["sample_note"] = str(e)[:80]
    result["peak_memory_mib"] = round(_peak_memory_mib(), 1)
    return result


def measure_torch(name: str, args, batch_size: int) -> dict:
    import torch

    sys.path.insert(0, HERE)
    from torch_models import make_step

    if args.threads:
        torch.set_num_threads(args.threads)
    step, params = make_step(name, batch_size)
    start = time.perf_counter()
    step()
    first_s = time.perf_counter() - start
    for _ in range(3):
        step()
    calls, start = 0, time.perf_counter()
    while calls < args.steps and time.perf_counter() - start < args.max_seconds:
        loss = step()
        calls += 1
    elapsed = time.perf_counter() - start
    return {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_params": params, "torch_first_step_s": round(first_s, 2),
            "torch_train_steps_per_s": round(max(calls, 1) / elapsed, 2),
            "torch_loss": float(loss.detach()),
            "torch_peak_memory_mib": round(_rss_mib(), 1)}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(flag: str, spec: str, args, extra=()) -> dict:
    """Run one measurement in a subprocess; its last stdout line is the JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), flag, spec, "--steps", str(args.steps),
           "--max_seconds", str(args.max_seconds), "--sample_num", str(args.sample_num),
           "--sample_repeats", str(args.sample_repeats), "--threads", str(args.threads),
           *[f"--set={s}" for s in args.set], *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"config": spec, "error": " | ".join(tail)[-300:]}
    return json.loads(lines[-1])


def machine() -> dict:
    import jax
    import jaxlib

    device = jax.devices()[0]
    return {"platform": platform.platform(), "processor": platform.processor() or "",
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "backend": device.platform, "device": device.device_kind,
            "num_devices": jax.device_count()}


def _fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: list[dict], info: dict, command: str) -> str:
    """The results as a markdown table, headed by the machine and the command."""
    torch = any("torch_train_steps_per_s" in r for r in results)
    lines = [
        f"Machine: {info['device']} ({info['backend']}, {info['num_devices']} device(s)), "
        f"{info['cpu_count']} CPU cores, {info['platform']}; Python {info['python']}, "
        f"jax {info['jax']}, jaxlib {info['jaxlib']}"
        + (f", PyTorch {next(r['torch_version'] for r in results if 'torch_version' in r)}"
           if torch else "") + ".",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    head = ["config", "params", "batch", "compile s", "train steps/s", "train img/s",
            "sample img/s", "peak MiB"]
    if torch:
        head += ["PyTorch steps/s", "genjax / PyTorch"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['config']} | error: {r['error']} |" + " |" * (len(head) - 2))
            continue
        row = [r["config"], f"{r['params'] / 1e6:.2f}M", r["batch_size"], _fmt(r["compile_s"]),
               _fmt(r["train_steps_per_s"], 2), _fmt(r["train_images_per_s"]),
               _fmt(r.get("sample_images_per_s")), _fmt(r["peak_memory_mib"], 0)]
        if torch:
            ts = r.get("torch_train_steps_per_s")
            ratio = f"{r['train_steps_per_s'] / ts:.2f}x" if ts else "–"
            if ts and r.get("torch_params") != r["params"]:   # not the same architecture
                ratio += f" (PyTorch twin has {r['torch_params']} parameters)"
            row += [_fmt(ts, 2), ratio]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def replace_section(path: str, table: str) -> None:
    """Put ``table`` between the markers of ``path`` (appended with them if absent)."""
    text = open(path).read() if os.path.exists(path) else ""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help="comma-separated NAME or NAME:ARG of configs/NAME.py")
    p.add_argument("--steps", type=int, default=50, help="timed train steps per config")
    p.add_argument("--max_seconds", type=float, default=60.0,
                   help="stop the timed steps after this many seconds")
    p.add_argument("--sample_num", type=int, default=16)
    p.add_argument("--sample_repeats", type=int, default=2)
    p.add_argument("--torch", action="store_true", help="time the PyTorch twins too")
    p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: all cores)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="", help="write the results as JSON here")
    p.add_argument("--readme", default="", help="replace the table in this markdown file")
    p.add_argument("--one", default="", help=argparse.SUPPRESS)
    p.add_argument("--one_torch", default="", help=argparse.SUPPRESS)
    p.add_argument("--batch_size", type=int, default=64, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure_genjax(args.one, args)))
        return
    if args.one_torch:
        print(json.dumps(measure_torch(args.one_torch, args, args.batch_size)))
        return

    specs = [s for s in args.configs.split(",") if s]
    results = []
    for spec in specs:
        print(f"[run.py] {spec} ...", file=sys.stderr, flush=True)
        result = _child("--one", spec, args)
        if args.torch and spec in TWINS and "error" not in result:
            result.update(_child("--one_torch", spec, args,
                                 ["--batch_size", str(result["batch_size"])]))
        results.append(result)
        print(f"[run.py] {json.dumps(result)}", file=sys.stderr, flush=True)
    info = machine()
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = markdown(results, info, command.strip())
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "command": command, "results": results}, f, indent=1)
    if args.readme:
        replace_section(args.readme, table)


if __name__ == "__main__":
    main()
