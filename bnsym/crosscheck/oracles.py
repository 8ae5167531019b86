"""The oracles of ``bnsym check``: for each shipped layer, its NumPy references and its PyTorch
kernel, in one table.

An oracle is an implementation the generated code is compared with.  :data:`ORACLES` holds, for
each layer bnsym ships, keyed by its declaration:

- its hand-written NumPy references in :mod:`bnsym.reference`, fused (the closed form) and
  staged (the graph node by node), by mode (batch norm's eval mode has its own functions), and
  how each is called after x (:class:`Reference`);
- its fused PyTorch kernel, ``torch.nn.functional.<name>``: how it is called in the layer's
  own layout and which variants it computes (:class:`TorchKernel`) -- every one of them
  normalizes with the biased variance and ε inside the root, ``batch_norm`` also in eval mode
  with running statistics, and refuses ε = 0 in training.

:func:`oracles_for` looks a layer up by what it computes (:attr:`Layer.function`: centred or
not, how γ and β are shared, β or not, the grouping), so that a user's declaration of layer
norm under another name or title is compared with F.layer_norm too.  A layer that computes
something else -- a user's, or one that reuses a shipped name with another declaration,
``Layer(name="layernorm", centred=False, ...)`` -- and a mode a row does not have, get the
references built from the declaration (:class:`~bnsym.reference.DeclaredReference`) and no
PyTorch kernel: ``bnsym check`` then compares with the torch-elementary layer built from the
declaration and says "no fused PyTorch kernel".  Never another layer's kernel.

Layer names and PyTorch's names are written here and in the declarations only; the rest of the
cross-check reads the rows.  NumPy only (PyTorch is called, never imported, here).

>>> from bnsym.family.layers import LAYERS, Layer
>>> ORACLES[LAYERS["groupnorm"]].torch.name
'group_norm'
>>> from types import SimpleNamespace as options
>>> scalenorm = Layer(name="scalenorm", centred=False, beta=False)  # one γ per row
>>> oracles_for(options(layer=scalenorm, m=4, channels=None, mode="train")).torch is None
True
>>> not_layernorm = Layer(name="layernorm", centred=False, params="element", beta=False)
>>> oracles_for(options(layer=not_layernorm, m=4, channels=None, mode="train")).torch.name
'rms_norm'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import bnsym.reference as reference
from bnsym.family.layers import LAYERS, Layer
from bnsym.reference.declared import DeclaredReference

__all__ = [
    "KNOWN_CAUSE",
    "KNOWN_DEFECTS",
    "KnownDefect",
    "ORACLES",
    "Oracles",
    "Reference",
    "TorchKernel",
    "called",
    "known_defect",
    "oracles_for",
    "results",
    "twin",
    "twin_note",
]

#: ``(data, o, eps) -> (args, kwargs)``: a reference's arguments after x, from the check's data
#: (``gamma``, ``beta``, ``running_mean``, ``running_var`` where present) and options ``o``.
Arguments = Callable[[dict[str, Any], Any, float], tuple[tuple[Any, ...], dict[str, Any]]]


@dataclass(frozen=True)
class Reference:
    """A NumPy forward and backward in the CS231n contract (``forward(x, ...) -> (out, cache)``,
    ``backward(dout, cache) -> (dx, dgamma[, dbeta])``) and the arguments it takes after x."""

    forward: Callable[..., tuple[Any, Any]]
    backward: Callable[..., tuple[Any, ...]]
    arguments: Arguments

    def __call__(self, data: dict[str, Any], o: Any, eps: float) -> dict[str, Any]:
        """y, dx, dgamma, dbeta (as far as the layer has them) on the check's data."""
        args, kwargs = self.arguments(data, o, eps)
        y, cache = self.forward(data["x"], *args, **kwargs)
        return results(y, self.backward(data["dout"], cache))


@dataclass(frozen=True)
class TorchKernel:
    """``torch.nn.functional.<name>``, a fused kernel of the layer.

    ``call(F, x, gamma, beta, eps, running, o) -> y`` runs it on tensors in the layer's own
    layout (``running`` is ``(running_mean, running_var)`` in eval mode, else None; ``o`` the
    check's options).  It normalizes with the biased variance and ε inside the square root
    only; ``eval``: it has an eval mode with running statistics; ``refuses_eps_0``: it raises
    for ε = 0 in training.
    """

    name: str
    call: Callable[..., Any]
    eval: bool = False
    refuses_eps_0: bool = False

    def why_not(self, o: Any, eps: float) -> str:
        """Why the kernel cannot compute the check's variant, or "" when it can."""
        where = f"torch.nn.functional.{self.name}"
        if o.eps_placement != "inside" or o.variance != "biased":
            return (
                f"{where} normalizes with the biased variance and eps inside the square root only."
            )
        if o.mode == "eval" and not self.eval:
            return f"{where} has no eval mode with running statistics."
        if o.mode == "train" and eps == 0 and self.refuses_eps_0:
            return f"{where} refuses eps = 0 in training."
        return ""


@dataclass(frozen=True)
class Oracles:
    """A layer's oracles: NumPy references by mode, fused and staged, and its PyTorch kernel
    (None: it has none).  ``hand_written``: the references are bnsym.reference's own functions,
    else built from the declaration."""

    fused: Mapping[str, Reference]
    staged: Mapping[str, Reference]
    torch: TorchKernel | None
    hand_written: bool = True


def results(y: Any, grads: Any) -> dict[str, Any]:
    """``{"y", "dx", "dgamma", "dbeta"}`` from a backward's tuple, leaving out the None ones (no
    γ and β without affine, no β for RMS norm) and the ones it does not return."""
    if not isinstance(grads, tuple | list):
        grads = (grads,)
    named = zip(("dx", "dgamma", "dbeta"), grads, strict=False)
    return {"y": y, **{k: v for k, v in named if v is not None}}


@dataclass(frozen=True)
class KnownDefect:
    """A defect of a PyTorch kernel that ``bnsym check`` finds and that is known upstream.

    ``quantities``: the results that come out wrong (``"tx"``: the third derivative in x;
    empty: whichever the check finds wrong); ``modes``: the modes it shows in; ``what``: one
    sentence on what is wrong; ``issues``: the upstream reports, ``owner/repo#number`` (none:
    not reported as far as bnsym knows). The check still counts the comparison as failed (its
    exit status says so); the report names the defect, so that a user does not take it for
    bnsym's.
    """

    quantities: tuple[str, ...]
    what: str
    issues: tuple[str, ...]
    modes: tuple[str, ...] = ("train",)


#: PyTorch 2.13 (CPU): reverse mode taken three times through the fused kernels of batch,
#: layer and instance norm gives a wrong derivative in x (their double-backward kernels take
#: the saved mean and 1/std as inputs that autograd does not differentiate through to x);
#: eval mode, the other results and group and RMS norm agree (docs/higher_order.md).
_REVERSE_3 = KnownDefect(
    ("tx",),
    "its third derivative in x (reverse mode three times) is wrong: the double backward's "
    "kernel does not differentiate the saved mean and 1/std through to x",
    ("pytorch/pytorch#175754", "pytorch/pytorch#186256"),
)


#: PyTorch 2.13 (CPU), bnsym check --modes fwd,rev (docs/forward_mode.md; research-17): the
#: fused kernels' forward-mode formula (derivatives.yaml: batch_norm_jvp, layer_norm_jvp) reads
#: the saved mean and 1/std, which have no forward formula of their own, so a derivative taken
#: through it treats them as constants. instance_norm runs batch_norm.
def _forward_mode(what: str, *issues: str) -> KnownDefect:
    return KnownDefect((), what, issues)


_JVP_JVP = "its jvp of the jvp is wrong"
_VJP_JVP = "its vjp of the jvp is wrong"
_THIRD = "its third-order compositions through forward mode are wrong"

#: Known defects by (kernel, order or composition): the kernel is ``torch.nn.functional``'s
#: name, the order 1, 2 or 3 of ``bnsym check --order`` (reverse mode, taken that often), a
#: composition of ``bnsym check --modes`` (``"ff"``: the jvp of the jvp, outer letter first),
#: or ``"order3"`` for the compositions of order 3 that involve forward mode. A row per defect.
KNOWN_DEFECTS: dict[tuple[str, int | str], KnownDefect] = {
    ("batch_norm", 3): _REVERSE_3,
    ("layer_norm", 3): _REVERSE_3,
    ("instance_norm", 3): _REVERSE_3,
    ("batch_norm", "ff"): _forward_mode(_JVP_JVP, "pytorch/pytorch#196699"),
    ("instance_norm", "ff"): _forward_mode(_JVP_JVP, "pytorch/pytorch#196699"),
    ("layer_norm", "ff"): _forward_mode(_JVP_JVP, "pytorch/pytorch#196700"),
    ("batch_norm", "rf"): _forward_mode(_VJP_JVP),
    ("instance_norm", "rf"): _forward_mode(_VJP_JVP),
    ("layer_norm", "rf"): _forward_mode(_VJP_JVP),
    ("batch_norm", "order3"): _forward_mode(_THIRD, *_REVERSE_3.issues, "pytorch/pytorch#196699"),
    ("instance_norm", "order3"): _forward_mode(
        _THIRD, *_REVERSE_3.issues, "pytorch/pytorch#196699"
    ),
    ("layer_norm", "order3"): _forward_mode(_THIRD, *_REVERSE_3.issues, "pytorch/pytorch#196700"),
}

#: Printed once under the rows of bnsym check --modes when a fused kernel is the odd one out.
KNOWN_CAUSE = (
    "Why (PyTorch 2.13): the fused kernel's forward-mode formula reads its saved mean and "
    "1/std, which have no forward formula of their own, so a derivative taken through that "
    "formula treats them as constants (derivatives.yaml: batch_norm_jvp, layer_norm_jvp)."
)


def known_defect(kernel: str, order: int | str, mode: str, quantity: str) -> KnownDefect | None:
    """The known defect of ``torch.nn.functional.<kernel>`` at ``order`` that makes
    ``quantity`` wrong in ``mode``, or None.

    >>> known_defect("layer_norm", 3, "train", "tx").issues[0]
    'pytorch/pytorch#175754'
    >>> known_defect("layer_norm", 3, "train", "tdout") is None
    True
    """
    defect = KNOWN_DEFECTS.get((kernel, order))
    if defect is None or mode not in defect.modes:
        return None
    if defect.quantities and quantity not in defect.quantities:
        return None
    return defect


# --- how each hand-written function is called after x -----------------------------------------


def _variant(o: Any) -> dict[str, Any]:
    return {"variance": o.variance, "eps_placement": o.eps_placement, "affine": o.affine}


def _gamma_beta(data: dict[str, Any], o: Any, eps: float) -> tuple[tuple[Any, ...], dict]:
    """``(x, gamma, beta, eps, variance=, eps_placement=, affine=)``."""
    return (data.get("gamma"), data.get("beta"), eps), _variant(o)


def _gamma_beta_groups(data: dict[str, Any], o: Any, eps: float) -> tuple[tuple[Any, ...], dict]:
    """Group norm's ``(x, gamma, beta, G, eps, ...)``: G groups of ``o.channels`` channels."""
    G = data["x"].shape[1] // (o.channels or 1)
    return (data.get("gamma"), data.get("beta"), G, eps), _variant(o)


def _gamma(data: dict[str, Any], o: Any, eps: float) -> tuple[tuple[Any, ...], dict]:
    """RMS norm's ``(x, gamma, eps, eps_placement=, affine=)``: no β, no variance."""
    return (data.get("gamma"), eps), {"eps_placement": o.eps_placement, "affine": o.affine}


def _running(data: dict[str, Any], o: Any, eps: float) -> tuple[tuple[Any, ...], dict]:
    """Eval mode's ``(x, gamma, beta, running_mean, running_var, eps, eps_placement=, affine=)``."""
    stats = (data["running_mean"], data["running_var"])
    return (data.get("gamma"), data.get("beta"), *stats, eps), {
        "eps_placement": o.eps_placement,
        "affine": o.affine,
    }


# --- how each PyTorch kernel is called in the layer's layout ----------------------------------


def _batch_norm(F: Any, x: Any, gamma: Any, beta: Any, eps: float, running: Any, o: Any) -> Any:
    mean, var = running if running is not None else (None, None)
    return F.batch_norm(
        x, mean, var, weight=gamma, bias=beta, training=running is None, momentum=0.0, eps=eps
    )


def _layer_norm(F: Any, x: Any, gamma: Any, beta: Any, eps: float, running: Any, o: Any) -> Any:
    return F.layer_norm(x, (o.m,), gamma, beta, eps)


def _instance_norm(F: Any, x: Any, gamma: Any, beta: Any, eps: float, running: Any, o: Any) -> Any:
    return F.instance_norm(x, weight=gamma, bias=beta, eps=eps)


def _group_norm(F: Any, x: Any, gamma: Any, beta: Any, eps: float, running: Any, o: Any) -> Any:
    return F.group_norm(x, x.shape[1] // (o.channels or 1), gamma, beta, eps)


def _rms_norm(F: Any, x: Any, gamma: Any, beta: Any, eps: float, running: Any, o: Any) -> Any:
    return F.rms_norm(x, (o.m,), gamma, eps)


# --- the table ----------------------------------------------------------------------------------


def _train(
    fused: tuple[Callable[..., Any], Callable[..., Any]],
    staged: tuple[Callable[..., Any], Callable[..., Any]],
    arguments: Arguments,
    torch: TorchKernel,
) -> Oracles:
    """A row of a layer with a training mode only."""
    return Oracles(
        fused={"train": Reference(*fused, arguments)},
        staged={"train": Reference(*staged, arguments)},
        torch=torch,
    )


#: The shipped layers' oracles, keyed by their declarations.
ORACLES: dict[Layer, Oracles] = {
    LAYERS["batchnorm"]: Oracles(
        fused={
            "train": Reference(
                reference.batchnorm_forward, reference.batchnorm_backward, _gamma_beta
            ),
            "eval": Reference(
                reference.batchnorm_forward_eval, reference.batchnorm_backward_eval, _running
            ),
        },
        staged={
            "train": Reference(
                reference.batchnorm_forward_staged, reference.batchnorm_backward_staged, _gamma_beta
            ),
            "eval": Reference(
                reference.batchnorm_forward_eval_staged,
                reference.batchnorm_backward_eval_staged,
                _running,
            ),
        },
        torch=TorchKernel("batch_norm", _batch_norm, eval=True, refuses_eps_0=True),
    ),
    LAYERS["layernorm"]: _train(
        (reference.layernorm_forward, reference.layernorm_backward),
        (reference.layernorm_forward_staged, reference.layernorm_backward_staged),
        _gamma_beta,
        TorchKernel("layer_norm", _layer_norm),
    ),
    LAYERS["instancenorm"]: _train(
        (reference.instancenorm_forward, reference.instancenorm_backward),
        (reference.instancenorm_forward_staged, reference.instancenorm_backward_staged),
        _gamma_beta,
        TorchKernel("instance_norm", _instance_norm),
    ),
    LAYERS["groupnorm"]: _train(
        (reference.groupnorm_forward, reference.groupnorm_backward),
        (reference.groupnorm_forward_staged, reference.groupnorm_backward_staged),
        _gamma_beta_groups,
        TorchKernel("group_norm", _group_norm),
    ),
    LAYERS["rmsnorm"]: _train(
        (reference.rmsnorm_forward, reference.rmsnorm_backward),
        (reference.rmsnorm_forward_staged, reference.rmsnorm_backward_staged),
        _gamma,
        TorchKernel("rms_norm", _rms_norm),
    ),
}


def oracles_for(o: Any) -> Oracles:
    """The oracles of the layer ``o.layer`` (``o``: a derivation's options, for m and channels):
    its row of :data:`ORACLES`, or references built from its declaration and no PyTorch kernel.
    """
    row = next((r for key, r in ORACLES.items() if key.function == o.layer.function), None)
    if row is not None and o.mode in row.fused:
        return row
    ref = DeclaredReference(o.layer, o.m, o.channels)
    return Oracles(
        fused={
            "train": Reference(ref.forward, ref.backward, _gamma_beta),
            "eval": Reference(ref.forward_eval, ref.backward_eval, _running),
        },
        staged={
            "train": Reference(ref.forward_staged, ref.backward_staged, _gamma_beta),
            "eval": Reference(ref.forward_eval_staged, ref.backward_eval_staged, _running),
        },
        torch=None,
        hand_written=False,
    )


def twin(layer: Layer) -> Layer | None:
    """The shipped layer that computes what ``layer`` computes (itself, for a shipped one), or
    None."""
    return next((key for key in ORACLES if key.function == layer.function), None)


def twin_note(layer: Layer) -> str:
    """A note for a declaration that is not a shipped one but computes what one computes (its
    references and kernel are that layer's); "" otherwise."""
    shipped = twin(layer)
    if shipped is None or shipped == layer:
        return ""
    return (
        f"{called(layer)} computes what bnsym's {shipped.name} computes: compared with "
        f"{shipped.name}'s references and PyTorch kernel."
    )


def called(layer: Layer) -> str:
    """How a report names a layer that is not in the table: its name, and for a declaration
    that reuses a shipped layer's name, that it is not that layer."""
    if layer.name in LAYERS:
        return f"{layer.name} as declared here (not bnsym's {layer.name})"
    return layer.name
