"""Multi-process (multi-host) training on JAX's distributed runtime.

Every process runs the same ``genjax train`` command; :func:`initialize` connects
them before JAX's first computation. Afterwards ``jax.devices()`` lists the devices
of every process, the ``mesh`` and ``fsdp`` steps of :mod:`genjax.train.step` span
them all, each process reads only its rows of every global batch, orbax writes the
checkpoint from every process, and logs, ``metrics.jsonl``, ``config.json`` and
sample grids come from process 0 alone.

How the processes find each other, in order:

1. ``--coordinator_address HOST:PORT --num_processes N --process_id I`` (flags of
   ``genjax train``, the arguments of :func:`initialize`);
2. the environment variables ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself),
   ``GENJAX_NUM_PROCESSES`` and ``GENJAX_PROCESS_ID`` (read here; JAX has no variables
   for these two);
3. ``--distributed`` (``auto=True``): ``jax.distributed.initialize()`` with no
   arguments, which detects Cloud TPU pods, SLURM (``srun``), Open MPI (``mpirun``)
   and Kubernetes jobs (JAX's ``clusters`` module).

Without any of these nothing is initialised and the run is single-process, as before.
On CPU the cross-process collectives are gloo's (``jax_cpu_collectives_implementation``:
the default of jax 0.10.2, set here when unset; ``mpi`` is kept when chosen); GPUs use
NCCL and TPUs their interconnect.
"""

from __future__ import annotations

import os

import jax


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def requested(coordinator_address: str | None = None, num_processes: int | None = None,
              process_id: int | None = None, auto: bool = False) -> bool:
    """Whether flags, environment or ``auto`` ask for a multi-process run."""
    given = (coordinator_address, num_processes, process_id)
    env = ("JAX_COORDINATOR_ADDRESS", "GENJAX_NUM_PROCESSES", "GENJAX_PROCESS_ID")
    return auto or any(v is not None for v in given) or any(os.environ.get(e) for e in env)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False,
               initialization_timeout: int = 300) -> bool:
    """Connect this process to the others (see the module doc); True when it did.

    Must run before any JAX computation. Flags win over environment variables; values
    neither gives are left to JAX's cluster detection."""
    if not requested(coordinator_address, num_processes, process_id, auto):
        return False
    if num_processes is None:
        num_processes = _env_int("GENJAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("GENJAX_PROCESS_ID")
    if not jax.config.jax_cpu_collectives_implementation:   # keep a user's "mpi"
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=initialization_timeout)
    return True


def is_primary() -> bool:
    """Whether this process writes logs, metrics, configs and sample grids (process 0)."""
    return jax.process_index() == 0


def check_parallel(parallel: str) -> None:
    """Several processes train only through a global mesh (``mesh`` or ``fsdp``)."""
    if jax.process_count() > 1 and parallel not in ("mesh", "fsdp"):
        raise ValueError(
            f"training.parallel = {parallel!r} runs on one process's devices, but this run "
            f"has {jax.process_count()} processes: set --config.training.parallel=mesh (or "
            "fsdp)")
