"""Helpers for the lifecycle and storage-accounting tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cargohold(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `cargohold` command line on a data directory (beside a running server); it must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    proc = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc
