"""Benchmark the backward pass: generated code vs the hand-written fused and staged NumPy code
vs PyTorch's CPU batch norm, at (m, D) = (4, 1_000_000) and (64, 4096), in one run.

Goal: generated/fused <= 1.5. Also reported: staged/fused (the speed-up CS231n asks students to
measure) and torch/fused. Each figure is the best of N timeit repeats, the implementations
interleaved so that a noisy machine slows them alike; ratios are what to read.

What each backward does: ``generated.backward(dout, x, gamma, beta)`` takes the inputs and
recomputes the batch statistics (its API has no cache); ``batchnorm_backward(dout, cache)``
and the staged one start from the forward's cache; torch runs ``y.backward(dout)`` on a
graph built by ``F.batch_norm`` (the graph is rebuilt each time, outside the timing).
All validate their inputs (finite, shapes).

Usage: python benchmarks/bench_codegen.py [--repeat N] [--number K]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import numpy as np

from bnsym import reference
from bnsym.codegen.module import generate

SHAPES = [(4, 1_000_000), (64, 4096)]


def torch_backward(x, gamma, beta, dout) -> Callable[[], object] | None:
    """A callable running torch's batch norm backward, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # NumPy is single-threaded here; compare like with like
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    dt = torch.tensor(dout)

    def graph():
        return torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)

    holder = [graph()]

    def run():
        holder[0].backward(dt)

    def setup():
        xt.grad = gt.grad = bt.grad = None
        holder[0] = graph()

    run.setup = setup  # type: ignore[attr-defined]
    return run


def best(fn: Callable[[], object], number: int, setup: Callable[[], object] | None) -> float:
    if setup is None:
        return timeit.timeit(fn, number=number) / number
    total = 0.0
    for _ in range(number):  # torch: a fresh graph for each backward, built outside the clock
        setup()
        total += timeit.timeit(fn, number=1)
    return total / number


def time_shape(m: int, D: int, repeat: int, number: int) -> dict[str, float]:
    """Best time per backward call of each implementation at (m, D), in seconds."""
    rng = np.random.default_rng(0)
    x = 1.5 + 2.0 * rng.standard_normal((m, D))
    gamma, beta = 1.0 + 0.5 * rng.standard_normal(D), rng.standard_normal(D)
    dout = rng.standard_normal((m, D))
    module = generate(m)
    _, fused_cache = reference.batchnorm_forward(x, gamma, beta)
    _, staged_cache = reference.batchnorm_forward_staged(x, gamma, beta)
    impls: dict[str, Callable[[], object]] = {
        "generated": lambda: module.backward(dout, x, gamma, beta),
        "fused": lambda: reference.batchnorm_backward(dout, fused_cache),
        "staged": lambda: reference.batchnorm_backward_staged(dout, staged_cache),
    }
    t = torch_backward(x, gamma, beta, dout)
    if t is not None:
        impls["torch"] = t
    times: dict[str, float] = {k: float("inf") for k in impls}
    for _ in range(repeat):
        for name, fn in impls.items():
            setup = getattr(fn, "setup", None)
            times[name] = min(times[name], best(fn, number, setup))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="best of this many (default 7)")
    parser.add_argument("--number", type=int, default=5, help="calls per timing (default 5)")
    args = parser.parse_args()

    print(
        f"{'(m, D)':<16}{'generated':>11}{'fused':>10}{'staged':>10}{'torch':>10}"
        f"{'gen/fused':>11}{'staged/fused':>14}{'torch/fused':>13}"
    )
    has_torch = False
    for m, D in SHAPES:
        times = time_shape(m, D, args.repeat, args.number)
        has_torch = "torch" in times
        ms = {k: f"{v * 1e3:.2f}ms" for k, v in times.items()}
        fused = times["fused"]
        torch_ratio = f"{times['torch'] / fused:.2f}" if has_torch else "-"
        print(
            f"{str((m, D)):<16}{ms['generated']:>11}{ms['fused']:>10}{ms['staged']:>10}"
            f"{ms.get('torch', 'n/a'):>10}{times['generated'] / fused:>11.2f}"
            f"{times['staged'] / fused:>14.2f}{torch_ratio:>13}"
        )
    if not has_torch:
        print("torch: no column; pip install 'bnsym[torch]' adds the tested version.")
    else:
        print("torch: one thread (torch.set_num_threads(1)), like NumPy's elementwise code.")


if __name__ == "__main__":
    main()
