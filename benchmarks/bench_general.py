"""Benchmark the general form's goal, in one run: ``bnsym derive --m 4`` and ``--m 128`` per
layer as whole processes, against a bare ``python -c "import sympy"`` in the same run (ratios
are what to read on a shared machine), with each child's peak memory (ru_maxrss).

Goals (issue 12): m = 128 with every proof within 10x ``import sympy`` and under 250 MB,
because the general form proves for every m at once; m = 4 within 2x.

Usage: PYTHONPATH=$PWD python benchmarks/bench_general.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import compile_bnsym

LAYERS = {
    "batchnorm": [],
    "layernorm": ["--layer", "layernorm"],
    "instancenorm": ["--layer", "instancenorm"],
    "groupnorm": ["--layer", "groupnorm", "--channels", "4"],
    "rmsnorm": ["--layer", "rmsnorm"],
}


def run(args: list[str]) -> tuple[float, float]:
    """Seconds and peak MB of one child process (ru_maxrss from wait4, kB on Linux)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, env=os.environ.copy())
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed: {' '.join(args)}")
    return elapsed, usage.ru_maxrss / 1024


def best(args: list[str], repeat: int) -> tuple[float, float]:
    runs = [run(args) for _ in range(repeat)]
    return min(t for t, _ in runs), max(mb for _, mb in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    compile_bnsym()  # as `pip install .` does: see benchmarks/_common.py
    anchor = [sys.executable, "-c", "import sympy"]
    print(f"best of {repeat} runs each, derive and its anchor `import sympy` interleaved")
    print(f"{'layer':<14}{'m':>5}{'seconds':>10}{'sympy':>8}{'x sympy':>10}{'peak MB':>10}")
    for name, extra in LAYERS.items():
        for m in (4, 128):
            cmd = [sys.executable, "-m", "bnsym", "derive", "--m", str(m), *extra]
            pairs = [(run(anchor), run(cmd)) for _ in range(repeat)]
            base = min(a for (a, _), _ in pairs)
            t = min(b for _, (b, _) in pairs)
            mb = max(mb for _, (_, mb) in pairs)
            print(f"{name:<14}{m:>5}{t:>10.2f}{base:>8.2f}{t / base:>10.1f}{mb:>10.0f}")


if __name__ == "__main__":
    main()
