"""Benchmark `bnsym derive` as whole processes against its anchors, in one run, alternating.

(a) `bnsym derive --m 4` against a bare `python -c "import sympy"` — goal ≤ 2×;
(b) `bnsym derive --m 16` (proofs included) against benchmarks/newcomer.py 16, which expands
    the loss for the whole batch and calls sympy.diff — goal ≥ 5× faster;
(c) m = 2, 4, ..., 128 against the bare import — goal m = 128 within 30×.

Machines here are shared and noisy, so every figure is a ratio of medians taken in the same
run, with the commands interleaved. Usage: python benchmarks/bench_derive.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import compile_bnsym

HERE = Path(__file__).resolve().parent
PY = sys.executable
IMPORT_SYMPY = [PY, "-c", "import sympy"]


def derive(m: int) -> list[str]:
    return [PY, "-m", "bnsym", "derive", "--m", str(m)]


def seconds(cmd: list[str], timeout: float = 600) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=timeout)
    return time.perf_counter() - start


def interleaved(cmds: dict[str, list[str]], repeat: int) -> dict[str, float]:
    """Median wall time of each command, the commands run in turn `repeat` times."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            times[name].append(seconds(cmd))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--newcomer-repeat", type=int, default=1)
    args = parser.parse_args()
    compile_bnsym()  # as `pip install .` does: see benchmarks/_common.py

    print(f"python {sys.version.split()[0]}; medians of {args.repeat} interleaved runs\n")
    a = interleaved({"import sympy": IMPORT_SYMPY, "derive --m 4": derive(4)}, args.repeat)
    ratio_a = a["derive --m 4"] / a["import sympy"]
    print("(a) bnsym derive --m 4 vs bare `import sympy`  (goal ≤ 2×)")
    print(
        f"    import sympy {a['import sympy']:.3f} s, derive {a['derive --m 4']:.3f} s: "
        f"{ratio_a:.2f}×\n"
    )

    b = interleaved(
        {"derive --m 16": derive(16), "newcomer 16": [PY, str(HERE / "newcomer.py"), "16"]},
        args.newcomer_repeat,
    )
    ratio_b = b["newcomer 16"] / b["derive --m 16"]
    print("(b) m = 16: bnsym derive (proofs included) vs expand-the-loss-and-diff  (goal ≥ 5×)")
    print(
        f"    newcomer {b['newcomer 16']:.2f} s, derive {b['derive --m 16']:.2f} s: "
        f"bnsym {ratio_b:.1f}× faster\n"
    )

    print("(c) bnsym derive --m M vs bare `import sympy`  (goal: m = 128 within 30×;")
    print("    medians of --repeat runs up to m = 32, one run above)")
    print("    | m | derive (s) | import sympy (s) | ratio |")
    print("    |---|---|---|---|")
    for m in (2, 4, 8, 16, 32, 64, 128):
        c = interleaved(
            {"import": IMPORT_SYMPY, "derive": derive(m)}, args.repeat if m <= 32 else 1
        )
        print(
            f"    | {m} | {c['derive']:.2f} | {c['import']:.2f} | "
            f"{c['derive'] / c['import']:.1f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
