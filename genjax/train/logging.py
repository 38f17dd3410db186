"""metrics.jsonl, TensorBoard events (when tensorboardX is installed) and progress."""

from __future__ import annotations

import json
import os


class MetricsWriter:
    """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl``.

    On resume from step s, lines written after s by the interrupted run are
    dropped first, so the file reads as one uninterrupted run; so is a torn last
    line (a hard kill in the middle of a write).
    """

    def __init__(self, workdir: str, resume_step: int = 0):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._truncate_after(resume_step)
        self._file = open(self.path, "a")
        self._tb = None
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            pass
        else:
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def _truncate_after(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        kept = []
        with open(self.path) as f:
            for line in f:
                record = _parse(line)
                if record is not None and record["step"] <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
        with open(self.path, "w") as f:
            f.writelines(kept)

    def write(self, step: int, metrics: dict) -> None:
        line = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), int(step))

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _parse(line: str) -> dict | None:
    """A metrics line, or None for a blank or torn one."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "step" in record else None


def read_metrics(workdir: str) -> list[dict]:
    """The lines of ``metrics.jsonl`` (a torn last line, from a hard kill, is skipped)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(_parse, f) if r is not None]
