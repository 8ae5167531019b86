"""Benchmark the normalization family, in one run (ratios are what to read on a shared machine):

(a) ``bnsym derive --layer NAME --m 4`` and ``--m 128`` as whole processes, against a bare
    ``python -c "import sympy"`` (goals: m = 4 within 2x, m = 128 within 30x, every layer);
(b) each layer's generated ``backward`` against the hand-written fused NumPy backward
    (:mod:`bnsym.reference`) on 262,144 values in groups of m = 64 (goal: within 1.5x), and
    the fused NumPy against PyTorch's CPU kernel (``torch.nn.functional``, autograd backward,
    one thread), reported.

Shapes in each layer's layout: batch norm x (64, 4096); layer and RMS norm x (4096, 64);
instance norm x (64, 64, 64); group norm x (64, 256, 16) in groups of 4 channels (G = 64).
Each time is the best of --repeat rounds, the implementations interleaved.

Usage: python benchmarks/bench_family.py [--repeat N] [--skip-derive]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import LAYERS, compile_bnsym, run_process

from bnsym import reference
from bnsym.codegen.module import generate


def derive_ratios(repeat: int) -> None:
    print("(a) bnsym derive --layer NAME vs bare `import sympy` (whole processes, medians)")
    print(f"    {'layer':<14}{'m':>5}{'derive (s)':>12}{'sympy (s)':>11}{'ratio':>8}  goal")
    for name in LAYERS:
        extra = ["--channels", "2"] if name == "groupnorm" else []
        for m, goal, n in ((4, 2, repeat), (128, 30, 1)):
            derive, bare = [], []
            for _ in range(n):
                bare.append(run_process([sys.executable, "-c", "import sympy"]))
                derive.append(
                    run_process(
                        [sys.executable, "-m", "bnsym", "derive", "--layer", name, "--m", str(m)]
                        + extra
                    )
                )
            d, b = statistics.median(derive), statistics.median(bare)
            print(f"    {name:<14}{m:>5}{d:>12.2f}{b:>11.2f}{d / b:>7.1f}x  <= {goal}x")


def torch_backward(name: str, x: Any, gamma: Any, beta: Any, dout: Any, G: int) -> Any:
    import torch

    torch.set_num_threads(1)  # NumPy is single-threaded here; compare like with like
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    dt = torch.tensor(dout)
    m = x.shape[-1]

    def graph() -> Any:
        if name == "batchnorm":
            return F.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)
        if name == "layernorm":
            return F.layer_norm(xt, (m,), gt, bt, 1e-5)
        if name == "rmsnorm":
            return F.rms_norm(xt, (m,), gt, 1e-5)
        if name == "instancenorm":
            return F.instance_norm(xt, weight=gt, bias=bt, eps=1e-5)
        return F.group_norm(xt, G, gt, bt, 1e-5)

    holder = [graph()]

    def run() -> None:
        holder[0].backward(dt)

    def setup() -> None:
        xt.grad = gt.grad = bt.grad = None
        holder[0] = graph()

    run.setup = setup  # type: ignore[attr-defined]
    return run


def timed(fn: Callable[[], object], number: int) -> float:
    setup = getattr(fn, "setup", None)
    if setup is None:
        return timeit.timeit(fn, number=number) / number
    total = 0.0
    for _ in range(number):  # torch: a fresh graph each time, built outside the clock
        setup()
        total += timeit.timeit(fn, number=1)
    return total / number


def backward_ratios(repeat: int, number: int) -> None:
    print()
    print("(b) backward on 262,144 values, groups of m = 64 (best of rounds, interleaved)")
    print(
        f"    {'layer':<14}{'x shape':<16}{'generated':>11}{'fused':>10}{'torch':>10}"
        f"{'gen/fused':>11}{'torch/fused':>13}  goal gen/fused <= 1.5"
    )
    rng = np.random.default_rng(0)
    for name, (m, options, shape, P) in LAYERS.items():
        x = 1.5 + 2.0 * rng.standard_normal(shape)
        dout = rng.standard_normal(shape)
        gamma, beta = 1.0 + 0.5 * rng.standard_normal(P), rng.standard_normal(P)
        G = shape[1] // options.get("channels", 1)
        module = generate(m, layer=name, **options)
        if name == "rmsnorm":
            params: tuple[Any, ...] = (gamma,)
            _, cache = reference.rmsnorm_forward(x, gamma)
        elif name == "groupnorm":
            params = (gamma, beta)
            _, cache = reference.groupnorm_forward(x, gamma, beta, G)
        else:
            params = (gamma, beta)
            _, cache = getattr(reference, f"{name}_forward")(x, gamma, beta)
        fused_backward = getattr(reference, f"{name}_backward")
        impls: dict[str, Callable[[], object]] = {
            "generated": lambda module=module, x=x, dout=dout, params=params: module.backward(
                dout, x, *params
            ),
            "fused": lambda fb=fused_backward, dout=dout, cache=cache: fb(dout, cache),
            "torch": torch_backward(name, x, gamma, beta, dout, G),
        }
        times = {k: float("inf") for k in impls}
        for _ in range(repeat):
            for k, fn in impls.items():
                times[k] = min(times[k], timed(fn, number))
        ms = {k: f"{v * 1e3:.2f}ms" for k, v in times.items()}
        fused = times["fused"]
        print(
            f"    {name:<14}{str(shape):<16}{ms['generated']:>11}{ms['fused']:>10}{ms['torch']:>10}"
            f"{times['generated'] / fused:>11.2f}{times['torch'] / fused:>13.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--number", type=int, default=5, help="calls per timing (default 5)")
    parser.add_argument("--skip-derive", action="store_true", help="only the backward part")
    args = parser.parse_args()
    compile_bnsym()  # as `pip install .` does: see benchmarks/_common.py
    print(f"python {sys.version.split()[0]}")
    if not args.skip_derive:
        derive_ratios(args.repeat)
    backward_ratios(args.repeat, args.number)


if __name__ == "__main__":
    main()
