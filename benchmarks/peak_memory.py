"""Run the CLI (``lambda_personalize.cli.main``) and print its peak memory as JSON on stderr:

- ``vm_hwm``: the peak resident set (VmHWM), which counts the pages of an mmap'd input that were
  read (file-backed: the page cache's, dropped under memory pressure, not the process's own);
- ``anon_peak``: the largest anonymous resident memory (RssAnon) seen, sampled every 20 ms: the
  memory the process itself holds.

    python -m benchmarks.peak_memory publish --bucket ... --user-factors users.npy ...
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

from lambda_personalize.cli import main


def status(field: str) -> int:
    found = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(found[1]) * 1024 if found else 0


def run() -> int:
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], status("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        code = main(sys.argv[1:])
    finally:
        done.set()
        sampler.join()
    print(json.dumps({"vm_hwm": status("VmHWM"), "anon_peak": peak[0]}), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(run())
