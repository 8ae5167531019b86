"""Benchmark the HTML notes (issue 18, item 4) as whole processes, against a bare `import sympy`.

(a) `bnsym derive --m 4 -o notes.html` against `python -c "import sympy"` — goal ≤ 2×; beside
    it for scale, the LaTeX notes (`-o notes.tex`, printed from the same blocks) and the
    text notes (`-o notes.txt`, the derivation with the least printing);
(b) the size of the page of `--m 128` — goal under 1 MB; and how long it takes;
(c) with Chromium on the machine: the browser test's cost, i.e. starting headless Chromium
    and checking one page on a desktop and on a phone (tests/chromium.py).

Machines here are shared and noisy, so (a) is a ratio of medians taken in the same run, the
commands interleaved. Usage: python benchmarks/bench_html.py [--repeat N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import compile_bnsym, run_process

HERE = Path(__file__).resolve().parent
PY = sys.executable


def derive(m: int, output: Path) -> list[str]:
    return [PY, "-m", "bnsym", "derive", "--m", str(m), "-o", str(output)]


def wall_and_cpu(cmd: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = run_process(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    compile_bnsym()  # as `pip install .` does: see benchmarks/_common.py
    tmp = Path(tempfile.mkdtemp(prefix="bnsym-bench-html-"))
    print(f"python {sys.version.split()[0]}; medians of {args.repeat} interleaved runs\n")

    cmds = {
        "import sympy": [PY, "-c", "import sympy"],
        "-o notes.html": derive(4, tmp / "notes.html"),
        "-o notes.tex": derive(4, tmp / "notes.tex"),
        "-o notes.txt": derive(4, tmp / "notes.txt"),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(args.repeat):
        for name, cmd in cmds.items():
            times[name].append(wall_and_cpu(cmd))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    print("(a) bnsym derive --m 4 -o FILE vs bare `import sympy`  (goal for .html: ≤ 2×)")
    print("    wall time (s), then CPU time (s; what the process itself used, less sensitive")
    print("    to other load on the machine), each with its ratio to `import sympy`")
    for name in cmds:
        print(f"    {name:14} wall {wall[name]:.2f} {wall[name] / wall['import sympy']:.2f}×"
              f"   cpu {cpu[name]:.2f} {cpu[name] / cpu['import sympy']:.2f}×")  # fmt: skip

    page = tmp / "m128.html"
    seconds = run_process(derive(128, page))
    text = page.read_text(encoding="utf-8")
    print("\n(b) bnsym derive --m 128 -o notes.html  (goal: under 1 MB)")
    print(f"    {len(text.encode()):,} bytes, {text.count('<math'):,} <math>, {seconds:.1f} s")

    sys.path.insert(0, str(HERE.parent / "tests"))
    from chromium import PHONE, Chromium, find_chromium

    if find_chromium() is None:
        print("\n(c) skipped: no Chromium (apt-get install chromium)")
        return
    start = time.perf_counter()
    with Chromium() as browser:
        started = time.perf_counter() - start
        desktop = browser.check(tmp / "notes.html")
        checked = time.perf_counter() - start - started
        phone = browser.check(tmp / "notes.html", PHONE[0], mobile=True)
        on_phone = time.perf_counter() - start - started - checked
    print("\n(c) the browser test of one page (m = 4), headless Chromium over the DevTools pipe")
    print(f"    start {started:.2f} s, check at 1280 px {checked:.2f} s, at 390 px "
          f"{on_phone:.2f} s; {desktop.probe['maths']} <math>, problems: "
          f"{len(desktop.problems) + len(phone.problems)}")  # fmt: skip


if __name__ == "__main__":
    main()
