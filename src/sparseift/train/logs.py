"""Run logs: metrics as JSONL and CSV, a progress line, optional TensorBoard."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["RunLogger", "format_duration"]


def format_duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class RunLogger:
    """Appends metric rows to ``metrics.jsonl`` and ``metrics.csv`` under ``out_dir``.

    Rows are dicts of numbers/strings with at least ``kind`` (``"train"``/``"eval"``) and
    ``step``. Resuming appends to the same files; the CSV header is the union of keys seen.
    """

    def __init__(
        self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = False, stream: TextIO | None = None
    ) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        self.jsonl = self.out_dir / "metrics.jsonl"
        self.csv = self.out_dir / "metrics.csv"
        self.writer = None
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as error:
                    raise ImportError(
                        "train.tensorboard=true needs the tensorboard package: pip install tensorboard"
                    ) from error
                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        """Write one metric row."""
        if not self.enabled:
            return
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self._rewrite_csv()
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"{row['kind']}/{key}", value, row["step"])

    def rows(self) -> list[dict[str, Any]]:
        """Every row written so far."""
        if not self.jsonl.is_file():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run repeats them)."""
        if not self.enabled:
            return
        kept = [row for row in self.rows() if row["step"] <= step]
        self.jsonl.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self._rewrite_csv()

    def _rewrite_csv(self) -> None:
        rows = self.rows()
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        with self.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    def progress(self, text: str) -> None:
        """Print one progress line (main process only)."""
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
