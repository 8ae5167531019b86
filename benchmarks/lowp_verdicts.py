"""What gradcheck, fixed-tolerance asserts and bnsym say about the same layers in bfloat16 and
float16 (docs/gradcheck.md quotes the table).

    python benchmarks/lowp_verdicts.py     # about five minutes on two cores; needs torch

For the normalization family of tests/corpus_lowp.py (layer, RMS, batch and group norm at
(8, 64), (32, 256) and (4, 8, 4096)), PyTorch's fused kernels, the hand-written Functions and
every wrong backward of the family, each in bfloat16 and float16:

- ``torch.autograd.gradcheck(fn, inputs, fast_mode=True)`` on the low-precision tensors;
- ``torch.testing.assert_close(g, g64.to(dtype), atol=t, rtol=t)``: the low-precision gradients
  (dout seeded normal) against the float64 gradients of the fused kernel cast to the dtype, at
  the dtype's default tolerance and at 1e-2, 5e-2 and 1e-1;
- ``bnsym.check_torch(fn, *inputs)``.

A cell counts the cases a tool FAILS: a right backward should read 0/n, a wrong one n/n.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

import bnsym

ROOT = Path(__file__).resolve().parents[1]
TOLERANCES = {"default": {}, "1e-2": 1e-2, "5e-2": 5e-2, "1e-1": 1e-1}


def load_corpus() -> Any:
    spec = importlib.util.spec_from_file_location("corpus_lowp", ROOT / "tests" / "corpus_lowp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corpus_lowp"] = module  # dataclasses look their module up while it is built
    spec.loader.exec_module(module)
    return module


corpus = load_corpus()


def gradients(fn: Any, inputs: list[torch.Tensor], dout: torch.Tensor) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    return list(torch.autograd.grad(fn(*leaves), leaves, dout))


#: torch.autograd.gradcheck builds Jacobians as large as (inputs × outputs) even in fast mode
#: where its numerical side is low precision: 7.6 GB at (4, 8, 4096), 24 GB and the OOM killer
#: for the full corpus. It is run where x has at most this many entries (the (4, 8, 4096)
#: cells count the other shapes only).
GRADCHECK_MAX_ENTRIES = 10_000


def gradcheck_fails(fn: Any, inputs: list[torch.Tensor]) -> bool | None:
    """Whether gradcheck fails ``fn``; None where it is not run (too large, see above)."""
    if inputs[0].numel() > GRADCHECK_MAX_ENTRIES:
        return None
    leaves = tuple(t.detach().clone().requires_grad_(True) for t in inputs)
    try:
        return not torch.autograd.gradcheck(fn, leaves, fast_mode=True, raise_exception=False)
    except Exception:  # an error in the check: the layer did not pass
        return True


def assert_fails(got: list[torch.Tensor], want: list[torch.Tensor], tol: Any) -> bool:
    options = {} if not tol else {"atol": tol, "rtol": tol}
    try:
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w.to(g.dtype), **options)
    except AssertionError:
        return True
    return False


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # gradcheck warns that low precision "will likely fail"
    tools = ["gradcheck (fast)"] + [f"assert {t}" for t in TOLERANCES] + ["bnsym"]
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for geo in corpus.geometries():
        for dname, dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
            inputs = corpus.make_inputs(geo, dtype)
            fused = corpus.fused(geo)
            gen = torch.Generator().manual_seed(123)
            y = fused(*inputs).detach()
            dout = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(dtype)
            want = gradients(fused, [t.double() for t in inputs], dout.double())
            backwards = [
                ("fused (right)", fused),
                ("hand-written (right)", corpus.handwritten(geo)),
            ]
            backwards += [
                (corpus.WRONG[bug], corpus.handwritten(geo, bug))
                for bug in corpus.WRONG
                if corpus.applies(geo, bug)
            ]
            for name, fn in backwards:
                got = gradients(fn, inputs, dout)
                verdicts: dict[str, bool | None] = {"gradcheck (fast)": gradcheck_fails(fn, inputs)}
                for t, tol in TOLERANCES.items():
                    verdicts[f"assert {t}"] = assert_fails(got, want, tol)
                verdicts["bnsym"] = not bnsym.check_torch(fn, *inputs).passed
                for tool, failed in verdicts.items():
                    if failed is None:
                        continue
                    cell = counts[(name, dname, tool)]
                    cell[0] += failed
                    cell[1] += 1
    print(
        f"torch {torch.__version__}, bnsym {bnsym.__version__}; cells: cases FAILED / cases "
        f"(gradcheck where x has at most {GRADCHECK_MAX_ENTRIES:,} entries)"
    )
    for dname in ("bfloat16", "float16"):
        print(f"\n### {dname}\n")
        print("| backward | " + " | ".join(tools) + " |")
        print("|---|" + "---|" * len(tools))
        for name in dict.fromkeys(k[0] for k in counts):
            cells = ["{}/{}".format(*counts[(name, dname, tool)]) for tool in tools]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
