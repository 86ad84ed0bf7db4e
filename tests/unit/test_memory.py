"""The allocator settings take on this platform (glibc on Linux) and change nothing else."""

from __future__ import annotations

import subprocess
import sys


def test_glibc_takes_the_settings_in_a_fresh_process() -> None:
    # In a child process, so the test run's own allocator is left as it was.
    code = "from cargohold.memory import keep_freed_buffers as k; print(k()); b = bytearray(8 << 20); del b"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("True" if sys.platform.startswith("linux") else "False")
