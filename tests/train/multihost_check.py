"""One process of a (multi-process) training run, for tests/train/test_multihost.py.

    python -m tests.train.multihost_check WORKDIR PARALLEL OUT.npz
        [--coordinator_address HOST:PORT --num_processes N --process_id I]
        [--stop_after CALLS] [--optimizer sgd] [--prefetch 2]

Trains the tiny VAE of tests/conftest.py (8 steps, 2 per call, checkpoints every 4)
in WORKDIR with ``training.parallel = PARALLEL`` through ``train_and_evaluate``; with
``--stop_after`` the batch fetch fails after CALLS calls (a hard kill: exit code 3,
the last checkpoint before it kept). Process 0 writes the final params and EMA
(gathered from every process) to OUT.npz; every process prints one JSON line with
its process count, device count, the rows of the batch it read, the number of state
leaves sharded over the devices, and (fsdp) whether the last checkpoint restores into
the step's shardings with the trained values.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from genjax.train import distributed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("parallel")
    parser.add_argument("out")
    parser.add_argument("--coordinator_address")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)
    parser.add_argument("--stop_after", type=int, default=0)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--prefetch", type=int, default=2)
    args = parser.parse_args()
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                           initialization_timeout=60)

    from jax.experimental import multihost_utils

    from genjax.train import step as step_lib
    from genjax.train import trainer as trainer_lib
    from tests.conftest import tiny_vae_config

    config = tiny_vae_config(parallel=args.parallel, prefetch=args.prefetch)
    with config.unlocked():
        config.optimizer.name = args.optimizer
    rows = step_lib.process_rows(config.training.batch_size, args.parallel)
    if args.stop_after:
        real, count = trainer_lib._next_batches, {"n": 0}

        def fetch(it, k):
            count["n"] += 1
            if count["n"] > args.stop_after:
                raise RuntimeError("killed")
            return real(it, k)

        trainer_lib._next_batches = fetch
    try:
        state = trainer_lib.train_and_evaluate(config, args.workdir)
    except RuntimeError as err:
        if str(err) != "killed":
            raise
        print(json.dumps({"killed": True}))
        sys.stdout.flush()
        return 3
    # Leaves whose arrays are split over the devices (fsdp), and a restore of the last
    # checkpoint into the step's shardings: the same values in the same shardings.
    sharded = sum(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state))
    restored_ok = None
    if args.parallel == "fsdp":
        from genjax.train.checkpoint import Checkpointer, abstract

        shardings = step_lib.state_shardings(state, "fsdp")
        ckpt = Checkpointer(args.workdir)
        restored, _ = ckpt.restore(abstract(state, shardings))
        ckpt.close()
        restored_ok = all(
            r.sharding == s and bool(np.array_equal(
                multihost_utils.process_allgather(r, tiled=True),
                multihost_utils.process_allgather(x, tiled=True)))
            for r, s, x in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings),
                               jax.tree.leaves(state)))
    if jax.process_count() > 1:
        state = multihost_utils.process_allgather(state, tiled=True)
    host = jax.device_get(state)
    if jax.process_index() == 0:
        leaves = {f"params/{jax.tree_util.keystr(p)}": np.asarray(x)
                  for p, x in jax.tree_util.tree_leaves_with_path(host.params)}
        leaves.update({f"ema/{jax.tree_util.keystr(p)}": np.asarray(x)
                       for p, x in jax.tree_util.tree_leaves_with_path(host.ema_params)})
        np.savez(args.out, step=np.asarray(host.step), **leaves)
    print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                      "rows": list(rows), "step": int(host.step), "sharded_leaves": sharded,
                      "restored_sharding_ok": restored_ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
