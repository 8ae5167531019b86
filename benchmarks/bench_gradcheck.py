"""Benchmark: bnsym's gradient checker against torch.autograd.gradcheck, in one process and run.

    python benchmarks/bench_gradcheck.py            # about 30 seconds on two cores
    python benchmarks/bench_gradcheck.py --repeat 1 # quicker, noisier timings

1. Speed: batch norm (float64) at (4, 3), (64, 32) and (512, 256), checked by torch's slow mode
   (the dense Jacobians), torch's fast mode (one random projection), bnsym ``mode="full"`` and
   bnsym's default (``mode="auto"``). Torch checks the layer written in torch operations (its
   best case: autograd computes the backward); bnsym checks the same layer written in NumPy
   (tests/corpus.py). The tools take turns in every timing round; the best time of each is
   reported, and the ratios from those.
2. Slow layers: convolution (x (2, 3, 7, 7), w (3, 3, 3, 3), pad 1, stride 1 and 2) and max
   pooling written with Python loops into a float array (no complex step), batch norm (64, 32)
   and a softmax loss, checked by bnsym's default and by torch's fast mode wrapping the same
   NumPy code; the forward calls of each, and the peak memory of a (4096, 1024) check.
3. Accuracy: every layer of tests/corpus.py (right and wrong backward passes), plus one wrong
   column of dx (1e-3 added to one column) at (64, 32) and (512, 256), checked by each tool.
   Torch checks the NumPy layer wrapped in a torch.autograd.Function; a torch error counts as
   "caught" for a wrong layer and as a failure for a right one.
4. Diagnosis: what the term-level diagnosis adds to a failing check of the family (the wrong
   family backwards of tests/corpus.py, the students' wrong batch and layer norms, batch norm
   (64, 32) and (512, 256) without its mean term): each check timed with the diagnosis and
   with it replaced by a no-op, interleaved, best of the rounds, in CPU time of the process (a
   check of a few milliseconds is otherwise timed by the other jobs of a shared machine;
   ``--only diagnosis`` runs this section alone).

4. Low precision: a (4, 8, 4096) layer norm (F.layer_norm) checked in bfloat16 and float16
   against the float32 check of the same layer (goal: bfloat16 within 3x); PyTorch on one
   thread, process CPU time, the dtypes taking turns.
5. Forward mode: check_torch(fn, ..., modes=("fwd",)) against torch.autograd.gradcheck(fn,
   check_forward_ad=True, fast_mode=True) (goal: no slower), and against its forward-only
   variant (check_backward_ad=False), on F.layer_norm in float64 at (4, 8), (64, 32) and
   (512, 256).

Prints Markdown tables (the README's gradient-checker section quotes them). Needs torch; it is
not a dependency. ``--sections 4,5`` runs only those.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bnsym
from bnsym.gradcheck.check import check_layer

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ["torch slow", "torch fast", "bnsym full", "bnsym default"]


def load_corpus() -> Any:
    spec = importlib.util.spec_from_file_location("corpus", ROOT / "tests" / "corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corpus"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


corpus = load_corpus()


# --- torch's side -----------------------------------------------------------------------------


def torch_bn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    mu = x.mean(0)
    xc = x - mu
    var = (xc * xc).mean(0)
    return gamma * xc / torch.sqrt(var + corpus.EPS) + beta


def as_torch_function(
    forward: Any, backward: Any, n_inputs: int, calls: list[int] | None = None
) -> Any:
    """A NumPy layer as a torch function: torch.autograd.gradcheck then checks its backward.

    Inputs that are not tensors (a dict of options) pass through; ``calls[0]`` counts the
    forward calls."""

    class Layer(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *tensors: Any) -> Any:
            if calls is not None:
                calls[0] += 1
            arrays = [t.detach().numpy() if isinstance(t, torch.Tensor) else t for t in tensors]
            out, cache = forward(*arrays)
            ctx.cache = cache
            if isinstance(out, tuple):
                return tuple(torch.from_numpy(np.array(o)) for o in out)
            return torch.from_numpy(np.array(out))

        @staticmethod
        def backward(ctx: Any, *douts: torch.Tensor) -> Any:
            d = [g.detach().numpy() for g in douts]
            grads = backward(tuple(d) if len(d) > 1 else d[0], ctx.cache)
            if isinstance(grads, dict):
                names = ["x", "gamma", "beta", "w", "b"]
                grads = [grads.get(k, grads.get("d" + k)) for k in names][:n_inputs]
            elif not isinstance(grads, tuple | list):
                grads = [grads]
            grads = list(grads) + [None] * (n_inputs - len(grads))  # options: no gradient
            return tuple(None if g is None else torch.from_numpy(np.array(g)) for g in grads)

    return Layer.apply


def torch_check(fn: Any, inputs: tuple[Any, ...], fast: bool) -> bool:
    tensors = tuple(
        torch.tensor(a, requires_grad=np.asarray(a).dtype.kind == "f")
        if isinstance(a, np.ndarray)
        else a
        for a in inputs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(torch.autograd.gradcheck(fn, tensors, fast_mode=fast, raise_exception=False))


# --- timing -----------------------------------------------------------------------------------


def speed(repeat: int) -> list[tuple[str, dict[str, float | None]]]:
    """Best time per tool and shape; the tools take turns in every round, so that a burst of
    load on the machine hits all of them alike."""
    rows = []
    for n, d in [(4, 3), (64, 32), (512, 256)]:
        x, gamma, beta = corpus.bn_inputs(n, d)(np.random.default_rng(0))
        tensors = tuple(torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
        size = x.size + gamma.size + beta.size
        runs: dict[str, Any] = {
            "torch slow": lambda t=tensors: torch.autograd.gradcheck(torch_bn, t, fast_mode=False),
            "torch fast": lambda t=tensors: torch.autograd.gradcheck(torch_bn, t, fast_mode=True),
            "bnsym full": lambda a=(x, gamma, beta): check_layer(
                corpus.bn_forward, corpus.bn_backward, *a, mode="full"
            ),
            "bnsym default": lambda a=(x, gamma, beta): check_layer(
                corpus.bn_forward, corpus.bn_backward, *a
            ),
        }
        if size > 5000:  # the dense Jacobian of (512, 256) has 131,584**2 entries (138 GB)
            del runs["torch slow"], runs["bnsym full"]
        times: dict[str, float | None] = dict.fromkeys(TOOLS)
        for fn in runs.values():
            fn()  # warm up: imports, caches
        for round_ in range(repeat * 4):
            for tool, fn in runs.items():
                slow = tool in ("torch slow", "bnsym full") and size > 1000
                if slow and round_ >= repeat // 2 + 1:  # seconds per run: fewer rounds
                    continue
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                best = times[tool]
                times[tool] = elapsed if best is None else min(best, elapsed)
        rows.append((f"({n}, {d})", times))
    return rows


# --- slow layers: loops over a float array, where the complex step cannot go -----------------

SLOW_CASES = [
    (
        "conv naive, stride 1",
        corpus.conv_naive_forward,
        corpus.conv_naive_backward,
        corpus.conv_inputs((2, 3, 7, 7), (3, 3, 3, 3), stride=1, pad=1),
    ),
    (
        "conv naive, stride 2",
        corpus.conv_naive_forward,
        corpus.conv_naive_backward,
        corpus.conv_inputs((2, 3, 7, 7), (3, 3, 3, 3), stride=2, pad=1),
    ),
    (
        "max pool naive",
        corpus.maxpool_naive_forward,
        corpus.maxpool_naive_backward,
        corpus.maxpool_naive_inputs((2, 3, 8, 8)),
    ),
    ("batch norm (64, 32)", corpus.bn_forward, corpus.bn_backward, corpus.bn_inputs(64, 32)),
    (
        "softmax loss (64, 10)",
        corpus.softmax_ce_forward,
        corpus.softmax_ce_backward,
        lambda rng: (rng.normal(size=(64, 10)), rng.integers(0, 10, size=64)),
    ),
]


def torch_tensors(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        torch.tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
        for a in inputs
    )


def slow_layers(repeat: int) -> list[tuple[str, float, float, int, int, bool, bool]]:
    """Per case: (name, bnsym time, torch fast time, bnsym calls, torch calls, verdicts)."""
    rows = []
    for name, forward, backward, make in SLOW_CASES:
        inputs = make(np.random.default_rng(0))
        calls = [0]
        fn = as_torch_function(forward, backward, len(inputs), calls)
        tensors = torch_tensors(inputs)

        def torch_run(fn: Any = fn, tensors: Any = tensors) -> bool:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return bool(
                    torch.autograd.gradcheck(fn, tensors, fast_mode=True, raise_exception=False)
                )

        def bnsym_run(
            forward: Any = forward, backward: Any = backward, inputs: Any = inputs
        ) -> Any:
            return check_layer(forward, backward, *inputs)

        torch_ok, report = torch_run(), bnsym_run()  # warm up, and the verdicts
        calls[0] = 0
        torch_run()
        torch_calls = calls[0]
        best = {"bnsym": math.inf, "torch": math.inf}
        for _ in range(repeat):
            for tool, run in (("bnsym", bnsym_run), ("torch", torch_run)):
                start = time.perf_counter()
                run()
                best[tool] = min(best[tool], time.perf_counter() - start)
        rows.append(
            (name, best["bnsym"], best["torch"], report.evaluations, torch_calls, report.passed,
             torch_ok)
        )  # fmt: skip
    return rows


def peak_memory(n: int = 4096, d: int = 1024) -> tuple[float, float, float]:
    """Peak bytes allocated (tracemalloc) by a default check of batch norm (n, d), by the
    layer's own forward and backward once (the floor any check of it pays), and the inputs'
    bytes."""
    x, gamma, beta = corpus.bn_inputs(n, d)(np.random.default_rng(0))
    tracemalloc.start()
    out, cache = corpus.bn_forward(x, gamma, beta)
    grads = corpus.bn_backward(np.random.default_rng(1).standard_normal(out.shape), cache)
    layer = tracemalloc.get_traced_memory()[1]
    del out, cache, grads
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    check_layer(corpus.bn_forward, corpus.bn_backward, x, gamma, beta)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, float(layer), float(x.nbytes + gamma.nbytes + beta.nbytes)


# --- accuracy ---------------------------------------------------------------------------------


def one_column_case(n: int, d: int) -> Any:
    def backward(dout: np.ndarray, cache: Any) -> Any:
        dx, dgamma, dbeta = corpus.bn_backward(dout, cache)
        dx = dx.copy()
        dx[:, d // 3] += 1e-3
        return dx, dgamma, dbeta

    return corpus.Case(
        f"bn: 1e-3 in one column of dx at ({n}, {d})",
        corpus.bn_forward,
        backward,
        corpus.bn_inputs(n, d),
        "one wrong column",
    )


def run_tool(tool: str, case: Any) -> bool | None:
    """True if the tool passes the layer, False if it fails it, None if not run."""
    inputs = case.inputs()
    size = sum(a.size for a in inputs if isinstance(a, np.ndarray))
    if tool.startswith("torch"):
        if tool == "torch slow" and size > 5000:
            return None
        fn = as_torch_function(case.forward, case.backward, len(inputs))
        try:
            return torch_check(fn, inputs, fast=tool == "torch fast")
        except Exception:  # an error in the check: the layer did not pass
            return False
    if tool == "bnsym full" and size > 5000:
        return None
    mode = "full" if tool == "bnsym full" else "auto"
    return check_layer(case.forward, case.backward, *inputs, mode=mode).passed


def accuracy() -> tuple[list[tuple[str, bool, dict[str, bool | None]]], dict[str, str]]:
    cases = corpus.WRONG + [one_column_case(64, 32), one_column_case(512, 256)] + corpus.CORRECT
    rows = []
    for case in cases:
        right = case.bug is None
        rows.append((case.name, right, {tool: run_tool(tool, case) for tool in TOOLS}))
    summary = {}
    n_wrong = sum(1 for _, right, _ in rows if not right)
    n_right = len(rows) - n_wrong
    for tool in TOOLS:
        caught = sum(1 for _, right, r in rows if not right and r[tool] is False)
        ran_wrong = sum(1 for _, right, r in rows if not right and r[tool] is not None)
        passed = sum(1 for _, right, r in rows if right and r[tool] is True)
        ran_right = sum(1 for _, right, r in rows if right and r[tool] is not None)
        summary[tool] = (
            f"{caught}/{ran_wrong} bugs caught, {passed}/{ran_right} correct layers passed"
            + (
                f" ({n_wrong - ran_wrong + n_right - ran_right} not run)"
                if ran_wrong < n_wrong or ran_right < n_right
                else ""
            )
        )
    return rows, summary


# --- the diagnosis' cost ------------------------------------------------------------------------


def diagnosis_cost(repeat: int) -> list[tuple[str, int, float, float]]:
    """(group, cases, seconds without, seconds with the diagnosis): the best of ``repeat``
    interleaved rounds per case, summed over the group's cases."""
    import bnsym.gradcheck.check as check_module

    with_it = check_module._diagnose

    def without(loss: Any, douts: Any, grads: Any, results: Any, named: Any) -> Any:
        return results, ""

    def no_mean(n: int, d: int) -> Any:
        return corpus.Case(
            f"bn ({n}, {d})", corpus.bn_forward, corpus.bn_backward_no_mean_term,
            corpus.bn_inputs(n, d), "no mean term",
        )  # fmt: skip

    students = [c for c in corpus.WRONG if c.name.startswith(("bn: missing", "bn: flipped",
                "bn: unbiased", "bn: another", "bn: eps", "bn: 0.1%", "layer norm"))]  # fmt: skip
    groups = [
        ("wrong family backwards (tests/corpus.py FAMILY_WRONG)", corpus.FAMILY_WRONG, repeat),
        ("the students' wrong batch and layer norms (WRONG)", students, repeat),
        ("batch norm (64, 32), no mean term", [no_mean(64, 32)], repeat),
        ("batch norm (512, 256), no mean term", [no_mean(512, 256)], 2),
    ]
    rows = []
    try:
        for title, cases, rounds in groups:
            total_off = total_on = 0.0
            for case in cases:
                inputs = case.inputs()
                best = {"off": math.inf, "on": math.inf}
                for _ in range(rounds):
                    for key, step in (("off", without), ("on", with_it)):
                        check_module._diagnose = step  # type: ignore[assignment]
                        start = time.process_time()
                        check_layer(case.forward, case.backward, *inputs)
                        best[key] = min(best[key], time.process_time() - start)
                total_off, total_on = total_off + best["off"], total_on + best["on"]
            rows.append((title, len(cases), total_off, total_on))
    finally:
        check_module._diagnose = with_it
    return rows


def print_diagnosis_cost(repeat: int) -> None:
    print("\n## Diagnosis: what it adds to a failing check (CPU time, best of rounds)\n")
    print("| failing checks | cases | without | with the diagnosis | added |")
    print("|---|---|---|---|---|")
    for title, n, off, on in diagnosis_cost(repeat):
        print(
            f"| {title} | {n} | {fmt_time(off)} | {fmt_time(on)} | {(on / off - 1) * 100:+.1f}% |"
        )


# --- low precision and forward mode --------------------------------------------------------------


def _layer_norm(d: int) -> Any:
    return lambda x, w, b: torch.nn.functional.layer_norm(x, (d,), w, b)


def _best_cpu(runs: dict[str, Any], rounds: int) -> dict[str, float]:
    """Best process CPU time per run, the runs taking turns in every round (the machine's load
    shows in the wall clock, far less in a process's own CPU time)."""
    for run in runs.values():
        run()  # warm up
    best = dict.fromkeys(runs, math.inf)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    return best


def low_precision(rounds: int) -> tuple[dict[str, float], dict[str, bool]]:
    """CPU time of check_torch on F.layer_norm at (4, 8, 4096) per dtype, and the verdicts."""
    from bnsym.gradcheck.pytorch import check_torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 4096, generator=gen, dtype=torch.float64) + 0.5
    gamma = 1 + 0.3 * torch.randn(4096, generator=gen, dtype=torch.float64)
    beta = 0.3 * torch.randn(4096, generator=gen, dtype=torch.float64)
    fn = _layer_norm(4096)
    inputs = {
        name: [t.to(dtype) for t in (x, gamma, beta)]
        for name, dtype in (
            ("float32", torch.float32),
            ("bfloat16", torch.bfloat16),
            ("float16", torch.float16),
        )
    }
    verdicts = {name: check_torch(fn, *a).passed for name, a in inputs.items()}
    runs = {name: (lambda a=a: check_torch(fn, *a)) for name, a in inputs.items()}
    return _best_cpu(runs, rounds), verdicts


def forward_mode(rounds: int) -> list[tuple[str, dict[str, float]]]:
    """CPU time of bnsym's forward-mode check against torch's gradcheck with forward AD."""
    from bnsym.gradcheck.pytorch import check_torch

    rows = []
    for shape in [(4, 8), (64, 32), (512, 256)]:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        w = torch.randn(shape[-1], generator=gen, dtype=torch.float64)
        b = torch.randn(shape[-1], generator=gen, dtype=torch.float64)
        fn = _layer_norm(shape[-1])
        leaves = tuple(t.clone().requires_grad_(True) for t in (x, w, b))

        def torch_fwd_rev(leaves: Any = leaves, fn: Any = fn) -> Any:
            return torch.autograd.gradcheck(fn, leaves, check_forward_ad=True, fast_mode=True)

        def torch_fwd(leaves: Any = leaves, fn: Any = fn) -> Any:
            return torch.autograd.gradcheck(
                fn, leaves, check_forward_ad=True, check_backward_ad=False, fast_mode=True
            )

        def bnsym_fwd(fn: Any = fn, args: Any = (x, w, b)) -> Any:
            report = check_torch(fn, *args, modes=("fwd",))
            assert report.passed, str(report)
            return report

        runs = {
            "torch fwd+rev (fast)": torch_fwd_rev,
            "torch fwd only (fast)": torch_fwd,
            "bnsym modes=fwd": bnsym_fwd,
        }
        rows.append((str(shape), _best_cpu(runs, rounds)))
    return rows


def print_low_precision(rounds: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as research-19 measured it: one thread, CPU time
    try:
        times, verdicts = low_precision(rounds)
    finally:
        torch.set_num_threads(threads)
    print("\n## Low precision: F.layer_norm (4, 8, 4096), one torch thread, CPU time\n")
    print("| dtype | check_torch | / float32 | verdict |")
    print("|---|---|---|---|")
    for name, t in times.items():
        verdict = "pass" if verdicts[name] else "FAIL"
        print(f"| {name} | {fmt_time(t)} | {t / times['float32']:.2f}x | {verdict} |")
    ratio = times["bfloat16"] / times["float32"]
    print(f"\nGoal: bfloat16 within 3x the float32 check ({ratio:.2f}x)")


def print_forward_mode(rounds: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = forward_mode(rounds)
    finally:
        torch.set_num_threads(threads)
    print("\n## Forward mode: F.layer_norm, float64, one torch thread, CPU time\n")
    names = list(rows[0][1])
    print("| x shape | " + " | ".join(names) + " | bnsym / torch fwd+rev | bnsym / torch fwd |")
    print("|---|" + "---|" * (len(names) + 2))
    for shape, t in rows:
        b, fr, f = t["bnsym modes=fwd"], t["torch fwd+rev (fast)"], t["torch fwd only (fast)"]
        print(
            f"| {shape} | " + " | ".join(fmt_time(t[k]) for k in names) + f" | {b / fr:.2f} | "
            f"{b / f:.2f} |"
        )
    print("\nGoal: check_torch(modes=('fwd',)) no slower than gradcheck(check_forward_ad=True, "
          "fast_mode=True)")  # fmt: skip


# --- report -----------------------------------------------------------------------------------


def fmt_time(t: float | None) -> str:
    return "cannot run" if t is None else f"{t * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="timing rounds (x4 for the fast tools); best shown"
    )
    parser.add_argument(
        "--only", choices=["diagnosis"], help="run one section alone: the diagnosis' cost"
    )
    parser.add_argument(
        "--sections", default="1,2,3,4,5", help="the sections to run, e.g. 4,5; default all"
    )
    args = parser.parse_args()
    if args.only == "diagnosis":
        print_diagnosis_cost(args.repeat * 4)
        return
    sections = {int(k) for k in args.sections.split(",")}
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"bnsym {bnsym.__version__}, {platform.machine()}, torch threads "
        f"{torch.get_num_threads()}"
    )
    if 4 in sections:
        print_low_precision(args.repeat * 3)
    if 5 in sections:
        print_forward_mode(args.repeat * 3)
    if not sections & {1, 2, 3}:
        return
    print("\n## Speed: batch norm, float64 (best of runs)\n")
    print(
        "| shape | "
        + " | ".join(TOOLS)
        + " | torch slow / bnsym full | bnsym default / torch fast |"
    )
    print("|---|" + "---|" * (len(TOOLS) + 2))
    for shape, t in speed(args.repeat):
        slow, fast, full, default = (t[k] for k in TOOLS)
        r1 = f"{slow / full:.1f}x" if slow and full else "-"
        r2 = f"{default / fast:.2f}" if default and fast else "-"
        print(f"| {shape} | " + " | ".join(fmt_time(t[k]) for k in TOOLS) + f" | {r1} | {r2} |")

    print("\n## Slow layers: bnsym default vs torch fast mode on the same NumPy code\n")
    print(
        "| layer | bnsym default | torch fast | bnsym / torch | forward calls bnsym | "
        "forward calls torch | verdicts (bnsym, torch) |"
    )
    print("|---|---|---|---|---|---|---|")
    total_b = total_t = 0.0
    bn_ratio = math.nan
    for name, tb, tt, cb, ct, ok_b, ok_t in slow_layers(args.repeat):
        total_b, total_t = total_b + tb, total_t + tt
        if name.startswith("batch norm"):
            bn_ratio = tb / tt
        verdicts = f"{'pass' if ok_b else 'FAIL'}, {'pass' if ok_t else 'FAIL'}"
        print(
            f"| {name} | {fmt_time(tb)} | {fmt_time(tt)} | {tb / tt:.2f} | {cb} | {ct} | "
            f"{verdicts} |"
        )
    print(
        f"| **total** | {fmt_time(total_b)} | {fmt_time(total_t)} | "
        f"**{total_b / total_t:.2f}** | | | |"
    )
    peak, layer, size = peak_memory()
    print(
        f"\nGoals: total <= 1x torch fast ({total_b / total_t:.2f}x), batch norm (64, 32) <= 1x "
        f"({bn_ratio:.2f}x), peak memory of a (4096, 1024) check <= 4x its inputs: "
        f"{peak / size:.1f}x ({peak / 2**20:.0f} MiB for {size / 2**20:.0f} MiB of inputs), of "
        f"which the layer's own forward and backward take {layer / size:.1f}x and the checker "
        f"{(peak - layer) / size:.1f}x"
    )

    print("\n## Accuracy: the corpus (tests/corpus.py)\n")
    rows, summary = accuracy()
    mark = {True: "pass", False: "FAIL", None: "-"}
    print("| layer | right? | " + " | ".join(TOOLS) + " |")
    print("|---|---|" + "---|" * len(TOOLS))
    for name, right, results in rows:
        cells = []
        for tool in TOOLS:
            r = results[tool]
            ok = r is None or r == right
            cells.append(mark[r] + ("" if ok else " (wrong)"))
        print(f"| {name} | {'right' if right else 'wrong'} | " + " | ".join(cells) + " |")
    print("\n## Summary\n")
    for tool in TOOLS:
        print(f"- {tool}: {summary[tool]}")
    print_diagnosis_cost(args.repeat * 4)


if __name__ == "__main__":
    sys.exit(main())
