"""Benchmark order 2, in one run (ratios are what to read on a shared machine):

(a) ``bnsym derive --layer NAME --m 4 --order 2`` as a whole process against a bare
    ``python -c "import sympy"`` (goal: within 3x, every layer), medians;
(b) each layer's generated ``double_backward`` against PyTorch's CPU double backward (one
    thread): ``torch.autograd.grad`` of Σ gdx·dx + Σ gdgamma·dgamma + Σ gdbeta·dbeta, the
    first backward taken with ``create_graph=True`` outside the clock — PyTorch's second
    call alone, its ``batchnorm_double_backward`` and the like (goal: generated within 2x).

Shapes (groups of m = 64, 262,144 values, as bench_family): batch norm x (64, 4096); layer
and RMS norm x (4096, 64); instance norm x (64, 64, 64); group norm x (64, 256, 16) in
groups of 4 channels. Each time is the best of --repeat rounds, the two interleaved.

Usage: python benchmarks/bench_higher.py [--repeat N] [--number N] [--skip-derive]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from typing import Any

import numpy as np
from _common import LAYERS, compile_bnsym, run_process

from bnsym.codegen.higher import generate_higher
from bnsym.derivation import derive


def derive_ratios(repeat: int) -> None:
    print("(a) bnsym derive --layer NAME --m 4 --order 2 vs bare `import sympy` (medians)")
    print(f"    {'layer':<14}{'derive (s)':>12}{'sympy (s)':>11}{'ratio':>8}  goal")
    for name in LAYERS:
        extra = ["--channels", "2"] if name == "groupnorm" else []
        derive_t, bare = [], []
        for _ in range(repeat):
            bare.append(run_process([sys.executable, "-c", "import sympy"]))
            cmd = [sys.executable, "-m", "bnsym", "derive", "--layer", name, "--m", "4"]
            derive_t.append(run_process([*cmd, "--order", "2", *extra]))
        d, b = statistics.median(derive_t), statistics.median(bare)
        print(f"    {name:<14}{d:>12.2f}{b:>11.2f}{d / b:>7.1f}x  <= 3x")


def torch_double_backward(name: str, data: dict[str, Any], m: int, G: int) -> Any:
    """PyTorch's second autograd call, on a graph built (outside the clock) each time."""
    import torch

    torch.set_num_threads(1)  # the generated NumPy is single-threaded: like with like
    F = torch.nn.functional
    T = {k: torch.tensor(v) for k, v in data.items()}
    x, dout, gamma = (T[k].clone().requires_grad_(True) for k in ("x", "dout", "gamma"))
    beta = T["beta"].clone().requires_grad_(True)
    has_beta = name != "rmsnorm"

    def graph() -> Any:
        if name == "batchnorm":
            y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
        elif name == "layernorm":
            y = F.layer_norm(x, (m,), gamma, beta, 1e-5)
        elif name == "rmsnorm":
            y = F.rms_norm(x, (m,), gamma, 1e-5)
        elif name == "instancenorm":
            y = F.instance_norm(x, weight=gamma, bias=beta, eps=1e-5)
        else:
            y = F.group_norm(x, G, gamma, beta, 1e-5)
        wrt = [x, gamma] + ([beta] if has_beta else [])
        grads = torch.autograd.grad(y, wrt, dout, create_graph=True)
        cot = [T["gdx"], T["gdgamma"]] + ([T["gdbeta"]] if has_beta else [])
        return sum((c * g).sum() for c, g in zip(cot, grads, strict=True))

    holder = [graph()]

    def run() -> None:
        torch.autograd.grad(holder[0], (x, dout, gamma))

    def setup() -> None:
        holder[0] = graph()

    run.setup = setup  # type: ignore[attr-defined]
    return run


def timed(fn: Any, number: int) -> float:
    setup = getattr(fn, "setup", None)
    if setup is None:
        return timeit.timeit(fn, number=number) / number
    total = 0.0
    for _ in range(number):
        setup()
        total += timeit.timeit(fn, number=1)
    return total / number


def double_backward_ratios(repeat: int, number: int) -> None:
    print()
    print("(b) double backward on 262,144 values, groups of m = 64 (best of rounds)")
    print(f"    {'layer':<14}{'x shape':<16}{'generated':>11}{'torch':>10}{'gen/torch':>11}  goal")
    rng = np.random.default_rng(0)
    for name, (m, options, shape, P) in LAYERS.items():
        data = {
            "x": 1.5 + 2.0 * rng.standard_normal(shape),
            "dout": rng.standard_normal(shape),
            "gdx": rng.standard_normal(shape),
        }
        for k in ("gamma", "beta", "gdgamma", "gdbeta"):
            data[k] = rng.standard_normal(P)
        G = shape[1] // options.get("channels", 1)
        module = generate_higher(derive(m, layer=name, **options))
        if name == "rmsnorm":
            args: tuple[Any, ...] = (data["gdx"], data["gdgamma"], data["dout"], data["x"])
            args += (data["gamma"],)
        else:
            args = (data["gdx"], data["gdgamma"], data["gdbeta"], data["dout"], data["x"])
            args += (data["gamma"], data["beta"])
        impls = {
            "generated": lambda module=module, args=args: module.double_backward(*args),
            "torch": torch_double_backward(name, data, m, G),
        }
        times = {k: float("inf") for k in impls}
        for _ in range(repeat):
            for k, fn in impls.items():
                times[k] = min(times[k], timed(fn, number))
        ms = {k: f"{v * 1e3:.2f}ms" for k, v in times.items()}
        ratio = times["generated"] / times["torch"]
        print(
            f"    {name:<14}{str(shape):<16}{ms['generated']:>11}{ms['torch']:>10}"
            f"{ratio:>10.2f}x  <= 2x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--number", type=int, default=5, help="calls per timing (default 5)")
    parser.add_argument("--skip-derive", action="store_true", help="only the timing part (b)")
    args = parser.parse_args()
    compile_bnsym()  # as `pip install .` does: see benchmarks/_common.py
    print(f"python {sys.version.split()[0]}")
    if not args.skip_derive:
        derive_ratios(args.repeat)
    double_backward_ratios(args.repeat, args.number)


if __name__ == "__main__":
    main()
