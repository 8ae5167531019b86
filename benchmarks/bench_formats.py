"""Benchmark every output format of `bnsym derive --m 128` against a bare `import sympy`.

Goal (issue 20, item 4): every format within 10× the bare import, JSON as fast as text. The
formats are read from the table bnsym.notes.formats.FORMATS, so a new row is timed the day
it is added; a format written only to a file (PDF) is written to a temporary one.

Machines here are shared and noisy, so every figure is a ratio of medians taken in the same
run, each format interleaved with its own `import sympy` anchor. Also printed: the peak
resident memory of one run of each (ru_maxrss of the child).

Usage: python benchmarks/bench_formats.py [--m 128] [--repeat 3] [--layer batchnorm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import compile_bnsym

from bnsym.notes.formats import FORMATS

PY = sys.executable
IMPORT_SYMPY = [PY, "-c", "import sympy"]
GOAL = 10.0


def run(cmd: list[str]) -> float:
    """Wall seconds of one process (a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - start


def peak_mb(cmd: list[str]) -> float:
    """Peak resident memory of ``cmd``, measured in a process of its own."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([PY, "-c", probe, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layer", default="batchnorm")
    args = parser.parse_args()
    compile_bnsym()  # as `pip install .` does: see benchmarks/_common.py

    tmp = tempfile.mkdtemp(prefix="bnsym-bench-")
    commands: dict[str, list[str]] = {}
    for row in FORMATS.values():
        cmd = [PY, "-m", "bnsym", "derive", "--layer", args.layer, "--m", str(args.m)]
        if row.file_only:
            cmd += ["-o", os.path.join(tmp, "notes" + row.extensions[0])]
        else:
            cmd += ["--format", row.name]
        commands[row.name] = cmd

    print(
        f"python {sys.version.split()[0]}; bnsym derive --layer {args.layer} --m {args.m}; "
        f"medians of {args.repeat} runs, each interleaved with `import sympy`\n"
    )
    print(f"{'format':<10}{'derive (s)':>11}{'sympy (s)':>11}{'ratio':>8}{'peak MB':>9}  goal")
    for name, cmd in commands.items():
        times: list[float] = []
        anchors: list[float] = []
        for _ in range(args.repeat):
            anchors.append(run(IMPORT_SYMPY))
            times.append(run(cmd))
        t, a = statistics.median(times), statistics.median(anchors)
        ratio = t / a
        mark = "ok" if ratio <= GOAL else "OVER"
        print(
            f"{name:<10}{t:>11.2f}{a:>11.2f}{ratio:>7.1f}×{peak_mb(cmd):>9.0f}  "
            f"<= {GOAL:g}× {mark}",
            flush=True,
        )


if __name__ == "__main__":
    main()
