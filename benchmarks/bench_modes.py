"""Benchmark forward mode, in one run (ratios are what to read on a shared machine):

(a) ``bnsym derive --layer NAME --m 4 --modes fwd`` as a whole process against a bare
    ``python -c "import sympy"`` (goal: within 2x), and ``--modes fwd,rev --order 2``
    (goal: within 4x), every layer, medians;
(b) each layer's generated ``jvp`` against ``torch.func.jvp`` over PyTorch's fused CPU kernel
    (the oracle table's ``F.batch_norm``, ``F.layer_norm``, …; one thread, like the generated
    NumPy) at 262,144 values (goal: generated within 1.5x);
(c) each layer's generated ``hvp`` against PyTorch's forward-over-reverse,
    ``torch.func.jvp`` of ``torch.func.vjp`` over the fused kernel (goal: within 2x), and, for
    reference, PyTorch's reverse-over-reverse (``torch.autograd.grad`` twice, the first graph
    built outside the clock).

Shapes (groups of m = 64, 262,144 values, as bench_family and bench_higher): batch norm x
(64, 4096); layer and RMS norm x (4096, 64); instance norm x (64, 64, 64); group norm x
(64, 256, 16) in groups of 4 channels. Each time is the best of --repeat rounds of --number
calls, the implementations interleaved.

Usage: python benchmarks/bench_modes.py [--repeat N] [--number N] [--skip-derive]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from typing import Any

import numpy as np
from _common import LAYERS, compile_bnsym, run_process

from bnsym.codegen.modes import generate_modes
from bnsym.crosscheck import pytorch
from bnsym.crosscheck.oracles import oracles_for
from bnsym.derivation import derive


def derive_ratios(repeat: int) -> None:
    print("(a) bnsym derive --layer NAME --m 4 --modes ... vs bare `import sympy` (medians)")
    print(f"    {'layer':<14}{'modes':<22}{'derive (s)':>11}{'sympy (s)':>11}{'ratio':>8}  goal")
    for name in LAYERS:
        extra = ["--channels", "2"] if name == "groupnorm" else []
        for modes, goal in ((["--modes", "fwd"], 2), (["--modes", "fwd,rev", "--order", "2"], 4)):
            derive_t, bare = [], []
            for _ in range(repeat):
                bare.append(run_process([sys.executable, "-c", "import sympy"]))
                cmd = [sys.executable, "-m", "bnsym", "derive", "--layer", name, "--m", "4"]
                derive_t.append(run_process([*cmd, *modes, *extra]))
            d, b = statistics.median(derive_t), statistics.median(bare)
            shown = " ".join(modes)
            print(f"    {name:<14}{shown:<22}{d:>11.2f}{b:>11.2f}{d / b:>7.1f}x  <= {goal}x")


def _inputs(shape: tuple[int, ...], P: int, has_beta: bool) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    data = {k: rng.standard_normal(shape) for k in ("tx", "dout")}
    data["x"] = 1.5 + 2.0 * rng.standard_normal(shape)
    for k in ("gamma", "tgamma", *(("beta", "tbeta") if has_beta else ())):
        data[k] = rng.standard_normal(P)
    return data


def _best(impls: dict[str, Any], repeat: int, number: int) -> dict[str, float]:
    times = {k: float("inf") for k in impls}
    for _ in range(repeat):
        for k, fn in impls.items():
            times[k] = min(times[k], timeit.timeit(fn, number=number) / number)
    return times


def _impls(
    torch: Any,
    module: Any,
    layer: Any,
    data: dict[str, Any],
    params: list[Any],
    tparams: list[Any],
    has_beta: bool,
) -> dict[str, Any]:
    """The five timed calls: the generated jvp and hvp, torch.func.jvp over the fused kernel,
    its forward over reverse, and autograd's reverse over reverse (graph built outside)."""
    T = {k: torch.tensor(v) for k, v in data.items()}
    theta = (T["x"], T["gamma"], *([T["beta"]] if has_beta else []))
    tangent = (T["tx"], T["tgamma"], *([T["tbeta"]] if has_beta else []))

    def f(x: Any, gamma: Any, *beta: Any) -> Any:
        return layer(x, gamma, beta[0] if beta else None, 1e-5, None)

    def grads(*th: Any) -> Any:
        return torch.func.vjp(f, *th)[1](T["dout"])

    leaves = [a.clone().requires_grad_(True) for a in theta]
    first = torch.autograd.grad(f(*leaves), leaves, T["dout"], create_graph=True)
    inner = sum((g * a).sum() for g, a in zip(first, tangent, strict=True))
    return {
        "jvp": lambda: module.jvp(data["x"], *params, data["tx"], *tparams),
        "func.jvp": lambda: torch.func.jvp(f, theta, tangent),
        "hvp": lambda: module.hvp(data["x"], *params, data["dout"], data["tx"], *tparams),
        "fwd/rev": lambda: torch.func.jvp(grads, theta, tangent),
        "rev/rev": lambda: torch.autograd.grad(inner, leaves, retain_graph=True, allow_unused=True),
    }


def generated_ratios(repeat: int, number: int) -> None:
    import torch

    torch.set_num_threads(1)  # the generated NumPy is single-threaded: like with like
    print()
    print("(b) jvp and (c) hvp on 262,144 values, groups of m = 64 (best of rounds, ms)")
    print(
        f"    {'layer':<14}{'jvp':>8}{'func.jvp':>10}{'ratio':>8}  goal  "
        f"{'hvp':>8}{'fwd/rev':>9}{'rev/rev':>9}{'ratio':>8}  goal"
    )
    for name, (m, options, shape, P) in LAYERS.items():
        d = derive(m, layer=name, **options)
        has_beta = d.symbols.layer.beta
        module = generate_modes(d, ("fwd",), 2)
        data = _inputs(shape, P, has_beta)
        params = [data["gamma"], *([data["beta"]] if has_beta else [])]
        tparams = [data["tgamma"], *([data["tbeta"]] if has_beta else [])]
        kernel = oracles_for(d.options).torch
        assert kernel is not None
        layer = pytorch.fused(torch, kernel, d.options)
        impls = _impls(torch, module, layer, data, params, tparams, has_beta)
        t = {k: v * 1e3 for k, v in _best(impls, repeat, number).items()}
        print(
            f"    {name:<14}{t['jvp']:>8.2f}{t['func.jvp']:>10.2f}{t['jvp'] / t['func.jvp']:>7.2f}x"
            f"  1.5x  {t['hvp']:>8.2f}{t['fwd/rev']:>9.2f}{t['rev/rev']:>9.2f}"
            f"{t['hvp'] / t['fwd/rev']:>7.2f}x  2x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--number", type=int, default=10, help="calls per timing (default 10)")
    parser.add_argument("--skip-derive", action="store_true", help="only the timings (b), (c)")
    args = parser.parse_args()
    compile_bnsym()  # as `pip install .` does: see benchmarks/_common.py
    print(f"python {sys.version.split()[0]}")
    if not args.skip_derive:
        derive_ratios(args.repeat)
    generated_ratios(args.repeat, args.number)


if __name__ == "__main__":
    main()
