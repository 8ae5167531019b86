"""Measure what `bnsym derive`, `codegen` and `check` cost, beside what bnsym.limits estimates.

The cost models of bnsym/limits.py (the table COSTS) were fitted to these measurements:
each command runs as a process of its own and is measured by the kernel (os.wait4: CPU
seconds, user + system, and the peak resident memory). The last columns are the estimate of
bnsym.limits.estimate for the same request and the ratio measured / estimated, which should
stay below 1 (the estimate errs on the side of refusing) and above about 0.3.

    python benchmarks/calibrate_limits.py            # every configuration (about 10 min)
    python benchmarks/calibrate_limits.py --quick    # the small ones (about 1 min)

``--force`` is passed to every command, so that a request above the default limit is measured
rather than refused; the forced caps still hold.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _common import compile_bnsym

from bnsym import limits

PY = sys.executable

#: (command, m, features or None, order, format or None); "quick" marks the small ones.
CONFIGS: list[tuple[str, int, int | None, int, str | None, bool]] = [
    ("derive", 32, None, 1, "text", True),
    ("derive", 64, None, 1, "text", True),
    ("derive", 128, None, 1, "text", True),
    ("derive", 128, None, 1, "json", True),
    ("derive", 128, None, 1, "latex", True),
    ("derive", 128, None, 1, "markdown", True),
    ("derive", 256, None, 1, "text", False),
    ("derive", 256, None, 1, "json", False),
    ("derive", 512, None, 1, "text", False),
    ("derive", 512, None, 1, "latex", False),
    ("derive", 4, None, 2, "text", True),
    ("derive", 8, None, 2, "text", True),
    ("derive", 16, None, 2, "text", True),
    ("derive", 4, None, 3, "text", True),
    ("derive", 8, None, 3, "text", True),
    ("derive", 16, None, 3, "text", False),
    ("codegen", 64, None, 1, None, True),
    ("codegen", 128, None, 1, None, True),
    ("codegen", 256, None, 1, None, False),
    ("codegen", 64, None, 2, None, True),
    ("codegen", 128, None, 2, None, False),
    ("codegen", 256, None, 2, None, False),
    ("check", 4, 1000, 1, None, True),
    ("check", 4, 100_000, 1, None, True),
    ("check", 4, 1_000_000, 1, None, False),
    ("check", 64, 1000, 1, None, True),
    ("check", 128, 3, 1, None, True),
    ("check", 4, 3, 2, None, True),
    ("check", 4, 30, 2, None, True),
    ("check", 4, 100, 2, None, False),
    ("check", 16, 3, 2, None, True),
    ("check", 16, 10, 2, None, False),
    ("check", 4, 3, 3, None, True),
    ("check", 4, 30, 3, None, True),
    ("check", 4, 100, 3, None, False),
    ("check", 16, 3, 3, None, True),
    ("check", 16, 10, 3, None, False),
]


def command(kind: str, m: int, features: int | None, order: int, fmt: str | None) -> list[str]:
    args = [PY, "-m", "bnsym", kind, "--m", str(m), "--order", str(order), "--force"]
    if fmt is not None:
        args += ["--format", fmt]
    if features is not None:
        args += ["--features", str(features), "--no-torch"]
    return args


#: Runs its arguments as a child and prints the child's status, CPU seconds and peak KB from
#: a small process: Linux carries a process's peak memory across exec, so a child forked by a
#: large process reports at least that process's peak.
PROBE = (
    "import os, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "wall = time.perf_counter() - start\n"
    "sys.stderr.write(p.stderr.read().decode()[:200])\n"
    "print(status, usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss)"
)


def measure(args: list[str]) -> tuple[float, float, float, int]:
    """CPU seconds, wall seconds and peak MB of one process, and its exit status."""
    done = subprocess.run([PY, "-c", PROBE, *args], capture_output=True, text=True)
    status, cpu, wall, peak = done.stdout.split()
    if int(status):
        print(f"    ({' '.join(args[2:])}: {done.stderr.strip()})")
    return float(cpu), float(wall), int(peak) / 1024, int(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small configurations only")
    args = parser.parse_args()
    compile_bnsym()
    print(
        f"python {sys.version.split()[0]}; CPU seconds and peak MB by os.wait4; estimate by "
        "bnsym.limits.estimate\n"
    )
    print(
        f"{'request':<44}{'cpu s':>8}{'wall s':>8}{'peak MB':>9}"
        f"{'est. s':>8}{'est. MB':>9}{'s/est':>7}{'MB/est':>8}"
    )
    for kind, m, features, order, fmt, quick in CONFIGS:
        if args.quick and not quick:
            continue
        cpu, wall, mb, status = measure(command(kind, m, features, order, fmt))
        est = limits.estimate(kind, m, features=features, order=order, fmt=fmt)
        name = f"{kind} --m {m} --order {order}" + (f" -D {features}" if features else "")
        name += f" --format {fmt}" if fmt else ""
        print(
            f"{name:<44}{cpu:>8.2f}{wall:>8.2f}{mb:>9.0f}{est.seconds:>8.2f}"
            f"{est.bytes / 1e6:>9.0f}{cpu / est.seconds:>7.2f}{mb * 1e6 / est.bytes:>8.2f}"
            + ("" if status == 0 else f"  exit {status >> 8}"),
            flush=True,
        )


if __name__ == "__main__":
    main()
