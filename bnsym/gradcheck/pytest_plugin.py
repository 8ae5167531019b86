"""pytest plugin: the ``gradcheck`` fixture, registered through the ``pytest11`` entry point.

After ``pip install bnsym`` every test can ask for it, with no configuration::

    def test_affine(gradcheck):
        gradcheck(affine_forward, affine_backward, x, w, b)        # forward -> (out, cache)
        gradcheck.function(f, vjp, x, w, b)                        # f -> out, vjp(dout, *inputs)
        gradcheck.double_backward(forward, backward, double_backward, x, w, b)  # orders 1 and 2
        gradcheck.torch(MyFunction.apply, x_tensor)                # autograd's backward, or
        gradcheck.torch(module, x_tensor, order=2)                 # a module's double backward
        gradcheck.torch(fn, x_tensor, modes=("fwd", "rev"), order=2)  # every composition
        gradcheck.jvp(f, f_jvp, x, w)                              # f_jvp(x, w, tx, tw)

A failing check raises :class:`bnsym.gradcheck.check.GradientCheckError`, so pytest shows the whole
diagnostic report. The defaults come from the command line (or the ini file):
``--gradcheck-seed``, ``--gradcheck-rtol``, ``--gradcheck-atol``, ``--gradcheck-mode``.

Importing this module imports neither NumPy nor SymPy: the checker is loaded when the fixture is
first used, so the plugin costs nothing in test runs that do not use it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from bnsym.gradcheck.check import OrdersReport, Report
    from bnsym.gradcheck.modes import ModesReport

_R = TypeVar("_R", "Report", "OrdersReport", "ModesReport")

_OPTIONS = {
    # name: (type, help)
    "seed": (int, "default seed of the gradcheck fixture (dout, directions, samples); default 0"),
    "rtol": (float, "default rtol of the gradcheck fixture; default: from the dtype"),
    "atol": (float, "default atol of the gradcheck fixture; default: from the error estimate"),
    "mode": (str, "default mode of the gradcheck fixture: auto, full or probe; default auto"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bnsym", "bnsym gradient checker")
    for name, (kind, help_text) in _OPTIONS.items():
        group.addoption(
            f"--gradcheck-{name}",
            dest=f"gradcheck_{name}",
            type=kind,
            default=None,
            help=help_text,
        )
        parser.addini(f"gradcheck_{name}", help_text, default=None)


MODES = ("auto", "full", "probe")  # bnsym.gradcheck.check.MODES, without importing NumPy here
_DEFAULTS = pytest.StashKey[dict[str, Any]]()


def pytest_configure(config: pytest.Config) -> None:
    """Read and check the defaults once, at start-up: a bad value is a usage error of the run,
    not a failure of every test that uses the fixture."""
    config.stash[_DEFAULTS] = _defaults(config)


def _defaults(config: pytest.Config) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, (kind, _) in _OPTIONS.items():
        value = config.getoption(f"gradcheck_{name}")
        if value is None:
            raw = config.getini(f"gradcheck_{name}")
            if raw in (None, ""):
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise pytest.UsageError(
                    f"gradcheck_{name} = {raw!r} in the ini file is not {kind.__name__}"
                ) from None
        if name == "mode" and value not in MODES:
            raise pytest.UsageError(
                f"gradcheck mode must be one of {', '.join(MODES)}, not {value!r}"
            )
        # not `value < 0` alone: a NaN tolerance is False against everything and passes all
        if name in ("rtol", "atol", "seed") and not (math.isfinite(value) and value >= 0):
            raise pytest.UsageError(f"gradcheck {name} must be a finite number >= 0, not {value}")
        options[name] = value
    return options


class GradCheck:
    """The object the ``gradcheck`` fixture returns.

    ``gradcheck(forward, backward, *inputs, **options)`` runs
    :func:`bnsym.assert_layer_gradients`; ``gradcheck.function(f, vjp, *inputs, **options)``
    the same for ``check_function``; ``gradcheck.double_backward(forward, backward,
    double_backward, *inputs)`` for ``check_double_backward``. All return the report
    (:class:`~bnsym.gradcheck.check.Report`, or ``OrdersReport``) when the check passes and raise
    ``GradientCheckError`` (an AssertionError) with the report otherwise.
    Keyword options override the command-line defaults in ``self.defaults``.
    """

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults

    def __call__(
        self,
        forward: Callable[..., Any],
        backward: Callable[..., Any],
        *inputs: Any,
        **options: Any,
    ) -> Report:
        __tracebackhide__ = True
        from bnsym.gradcheck.check import check_layer

        return self._raise(check_layer(forward, backward, *inputs, **{**self.defaults, **options}))

    def function(
        self, f: Callable[..., Any], vjp: Callable[..., Any], *inputs: Any, **options: Any
    ) -> Report:
        __tracebackhide__ = True
        from bnsym.gradcheck.check import check_function

        return self._raise(check_function(f, vjp, *inputs, **{**self.defaults, **options}))

    def double_backward(
        self,
        forward: Callable[..., Any],
        backward: Callable[..., Any],
        double_backward: Callable[..., Any],
        *inputs: Any,
        **options: Any,
    ) -> OrdersReport:
        """:func:`bnsym.gradcheck.check.check_double_backward`: the backward (order 1) and a
        hand-written ``double_backward(ggrads, dout, cache)`` (order 2); the failure says
        which order failed and where."""
        __tracebackhide__ = True
        from bnsym.gradcheck.check import check_double_backward

        report = check_double_backward(
            forward, backward, double_backward, *inputs, **{**self.defaults, **options}
        )
        return self._raise(report)

    def jvp(
        self, forward: Callable[..., Any], jvp: Callable[..., Any], *inputs: Any, **options: Any
    ) -> Report:
        """:func:`bnsym.check_jvp`: a hand-written ``jvp(*inputs, *tangents)`` against
        numerical directional derivatives of ``forward(*inputs)``."""
        __tracebackhide__ = True
        from bnsym.gradcheck.jvp import check_jvp

        options = {**self.defaults, **options}
        options.pop("mode", None)  # forward mode has random tangents only
        return self._raise(check_jvp(forward, jvp, *inputs, **options))

    def torch(self, fn: Any, *tensors: Any, **options: Any) -> Any:
        """:func:`bnsym.check_torch`: autograd's gradients of a function of tensors or an
        ``nn.Module`` (``order=2``: the double backward; ``modes=("fwd", "rev")``: forward
        mode and the compositions, a ModesReport); imports torch only here."""
        __tracebackhide__ = True
        from bnsym.gradcheck.pytorch import check_torch

        return self._raise(check_torch(fn, *tensors, **{**self.defaults, **options}))

    @staticmethod
    def _raise(report: _R) -> _R:
        __tracebackhide__ = True
        from bnsym.gradcheck.check import GradientCheckError

        if not report.passed:
            raise GradientCheckError(report)
        return report


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> GradCheck:
    """Check a layer's backward pass: ``gradcheck(forward, backward, *inputs)``."""
    defaults: dict[str, Any] = request.config.stash[_DEFAULTS]
    return GradCheck(dict(defaults))
