"""What holds for a layer that keeps running statistics, each stated where it is true.

A layer whose declaration has an eval mode normalizes, at inference, by a running mean and
variance: averages, over the groups seen in training, of each group's μ and σ², standing for
the population's E[x] and Var[x]. Three statements follow, each proved from the layer's own
graphs (the training graph, and the inference graph that eval mode derives):

- ``undo_population`` (train mode; centred, γ and β one pair per group): the paper's "γ and
  β can undo the normalization", with E[x] and Var[x], is a statement about the inference
  layer; with one group's statistics instead, γ and β undo that group only;
- ``inference_fold`` (eval mode): y_i = (γ_i/D)·x_i + (β_i − γ_i·μ_run/D), one multiply-add;
- ``running_var_unbiased`` (centred): over groups of m independent values of variance
  Var[x], E[σ²] = (m − 1)·k·Var[x] for the variance σ² = k·Σ(x_i − μ)² the derivation
  defines: (m − 1)/m·Var[x] for k = 1/m, so the running variance is estimated as
  m/(m − 1)·E[σ²]; Var[x] itself for k = 1/(m − 1) (``--variance unbiased``).

The words are the declaration's: the statistics' subscript (μ_B, σ²_B, E_B for batch norm's
``stat_suffix``), what a group is called (its ``of_m``: "a batch") and the paper's name of the
forward pass (``paper``). SymPy only.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from bnsym.core.build import forward_graph
from bnsym.core.cutoffs import JACOBIAN_MAX_M
from bnsym.core.graph import Step, Symbols, denominator
from bnsym.family.layers import Layer
from bnsym.proofs.display import BETA_I, E_X, GAMMA_I, VAR_X, X_I, Y_I, Y_POPULATION, expected_var
from bnsym.proofs.frame import Context, den_text
from bnsym.proofs.ring import Laurent

__all__ = [
    "inference_fold",
    "keeps_running_statistics",
    "running_var_unbiased",
    "stated_coefficient",
    "undo_population",
]


def keeps_running_statistics(decl: Layer) -> bool:
    """A running mean and variance: a layer with an eval mode whose statistics are centred
    (the running mean square of an uncentred layer has no m/(m − 1) and no E[x] to undo)."""
    return decl.has_eval and decl.centred


def group_words(decl: Layer) -> tuple[str, str]:
    """What one group is called in the notes, and several, from the declaration's ``of_m``.

    >>> from bnsym.family.layers import LAYERS
    >>> group_words(LAYERS["batchnorm"]), group_words(LAYERS["layernorm"])
    (('batch', 'batches'), ('group', 'groups'))
    """
    words = decl.of_m.split()
    if len(words) > 1 and words[0] in ("a", "an"):
        one = " ".join(words[1:])
        return one, one + ("es" if one.endswith(("s", "x", "ch", "sh")) else "s")
    return (decl.of_m[:-1] if decl.of_m.endswith("s") else decl.of_m), decl.of_m


def _paper(decl: Layer) -> str:
    return f" ({decl.paper})" if decl.paper else ""


# --- γ and β with the population's statistics --------------------------------------------------


def undo_population(c: Context) -> Step:
    """γ = √(Var[x] + ε) and β = E[x] undo the inference layer, for every input; γ and β
    taken from one group do not undo another."""
    s, decl, m = c.s, c.s.layer, c.m
    one, _ = group_words(decl)
    D_pop = denominator(VAR_X, s.eps, c.placement)
    # The inference layer is the layer's own eval-mode graph, at E[x] and Var[x].
    inference = {n.lhs: n.rhs for n in forward_graph(s, c.variance, c.placement, True, "eval")}
    population = {s.running_mean: E_X, s.running_var: VAR_X, s.gamma: D_pop, s.beta: E_X}
    inferred = [
        inference[yi].xreplace({xh: inference[xh]}).xreplace(population)
        for xh, yi in zip(s.x_hat, s.y, strict=True)
    ]
    # For contrast, with the training graph: γ, β set from the group (0, 2, 1, …, 1) do not
    # undo the group (0, 4, 2, …, 2), which has twice its spread (at ε = 0).
    first = [sp.Integer(0), sp.Integer(2)] + [sp.Integer(1)] * (m - 2)
    second = [2 * v for v in first]
    stats_1, stats_2 = _statistics(c, first), _statistics(c, second)
    gamma_1 = c.D.xreplace({**stats_1, s.eps: 0})
    at_2 = {**dict(zip(s.x, second, strict=True)), **stats_2, s.eps: 0}
    value = sp.simplify(c.y_graph[1].xreplace({**at_2, s.gamma: gamma_1, s.beta: stats_1[s.mu]}))
    other = bool(value.is_number) and sp.simplify(value - second[1]) != 0

    def holds(st: Step) -> bool:
        return other and all(
            sp.expand(y - st.rhs.xreplace({X_I: xi})) == 0
            for y, xi in zip(inferred, s.x, strict=True)
        )

    mu, var = c.mu_txt, c.var_txt
    return c.claim(
        Step(
            Y_POPULATION,
            X_I,
            "undo_population",
            note=("the paper's statement: " if decl.paper else "")
            + f"with γ = {den_text(c.placement, 'Var[x]', '√Var[x]')} and β = E[x], the "
            f"population's statistics, the inference layer returns every input; γ = {c.den_txt} "
            f"and β = {mu} undo one {one} only, since γ and β are shared by every {one} while "
            f"{mu} and {var} change from {one} to {one}",
        ),
        holds,
        f"γ = {den_text(c.placement, 'Var[x]', '√Var[x]')} and β = E[x] substituted into the "
        "inference layer (this layer's eval-mode graph, its running statistics E[x] and "
        "Var[x]) give the right-hand side, x, as a SymPy identity; and γ, β taken from the "
        f"{one} {_values(first)} give {value}, not {second[1]}, for the second value of the "
        f"{one} {_values(second)} at ε = 0",
    )


def _statistics(c: Context, values: list[sp.Integer]) -> dict[sp.Symbol, sp.Expr]:
    """The training graph's mean and variance at the numbers ``values``."""
    s = c.s
    at = dict(zip(s.x, values, strict=True))
    mu = c.definition[s.mu].xreplace(at)
    return {s.mu: mu, s.var: c.definition[s.var].xreplace({**at, s.mu: mu})}


def _values(values: list[sp.Integer]) -> str:
    shown = [str(v) for v in values]
    return "(" + ", ".join(shown if len(shown) <= 3 else [*shown[:3], "…", shown[-1]]) + ")"


# --- the inference layer as one multiply-add -----------------------------------------------------


def inference_fold(c: Context, yframe: Any) -> Step:
    """Eval mode: y_i = (γ_i/D)·x_i + (β_i − γ_i·μ_run/D), one multiply-add whose scale and
    shift are computed once (no μ_run where nothing is subtracted)."""
    s, decl = c.s, c.s.layer
    one_gamma = c.shared
    gamma = c.scale if one_gamma else GAMMA_I
    has_beta = c.affine and decl.beta
    beta = (c.betas[0] if one_gamma else BETA_I) if has_beta else sp.Integer(0)
    g_txt = ("γ" if one_gamma else "γᵢ") if c.affine else "1"
    b_txt = ("β" if one_gamma else "βᵢ") if has_beta else ""
    mean_txt = (f"{g_txt}·μ_run/D" if c.affine else "μ_run/D") if c.centred else ""
    shift_txt = (
        f"({b_txt} − {mean_txt})"
        if b_txt and mean_txt
        else b_txt or (f"(−{mean_txt})" if mean_txt else "0")
    )
    shift: sp.Expr = beta
    if c.centred:
        shift = sp.Add(beta, -gamma * s.running_mean / c.D, evaluate=False)
    rhs = sp.Add(sp.Mul(gamma / c.D, X_I, evaluate=False), shift, evaluate=False)

    def holds(st: Step) -> bool:
        return all(
            yframe.is_zero(yi - st.rhs.xreplace({X_I: xi, GAMMA_I: g, BETA_I: b}))
            for yi, xi, g, b in zip(c.y_graph, s.x, c.gammas, c.betas, strict=True)
        )

    _, many = group_words(decl)
    sfx = decl.stat_suffix
    stands = (
        f"μ_run and σ²_run stand for E[x] = E{sfx}[μ{sfx}] and Var[x] = "
        f"m/(m − 1)·E{sfx}[σ²{sfx}] over the training {many} (below)"
        if c.centred
        else f"σ²_run stands for the mean square over the training {many}"
    )
    return c.claim(
        Step(
            Y_I,
            rhs,
            "inference_fold",
            note=f"the inference layer folds into one multiply-add per value, its scale and "
            f"shift computed once; {stands}",
        ),
        holds,
        f"each yᵢ of the graph minus the right-hand side, ({g_txt}/D)·xᵢ + {shift_txt}, is the "
        "zero polynomial",
    )


# --- the expectation of the variance -------------------------------------------------------------


def stated_coefficient(m: int, k: sp.Rational) -> sp.Rational:
    """The claim: E[σ²] = (m − 1)·k·Var[x] for σ² = k·Σ(x_i − μ)² (E[Σ(x_i − μ)²] =
    (m − 1)·Var[x] for m independent values); what :func:`running_var_unbiased` proves."""
    return sp.Rational(m - 1) * k


def running_var_unbiased(c: Context) -> Step:
    """E[σ²] over groups of m independent values, for the variance this derivation defines
    (in eval mode, the training graph's), stated and proved for exactly that variance."""
    s, decl, m = c.s, c.s.layer, c.m
    definition = c.definition
    if not c.train:  # the variance the running statistics average: the training graph's
        train = forward_graph(s, c.variance, c.placement, c.affine, "train")
        definition = {n.lhs: n.rhs for n in train}
    coefficient = stated_coefficient(m, c.k)
    proved = _expectation(s, definition)
    sfx, var = decl.stat_suffix, f"σ²{decl.stat_suffix}"
    one, many = group_words(decl)
    each = "for every i" if m <= JACOBIAN_MAX_M else "for i = 1, 2 (the same formula in every x_i)"
    graph = "the graph's" if c.train else "the training graph's"
    unbiased = coefficient == 1
    if unbiased:
        note = (
            f"over {many} of m independent values: this {var}, which divides by m − 1, is "
            f"unbiased: its average over {many} is Var[x] exactly, what the running variance "
            f"estimates; the {one} variance that divides by m{_paper(decl)} is low on average "
            "by (m − 1)/m"
        )
    else:
        note = (
            f"over {many} of m independent values: the {one} variance, which divides by m, is "
            "low on average by (m − 1)/m, so the running variance estimates Var[x] = "
            f"m/(m − 1)·E{sfx}[{var}] = E{sfx} of the variance that divides by m − 1. That "
            f"1/(m − 1) belongs to the running variance, not to the normalization of the "
            f"{one}, which divides by m{_paper(decl)}"
        )
    rhs = VAR_X if unbiased else sp.Mul(coefficient, VAR_X, evaluate=False)

    def holds(st: Step) -> bool:
        stated = st.rhs / VAR_X  # the coefficient the statement gives
        return proved is not None and stated.is_Rational and stated == proved

    return c.claim(
        Step(expected_var(sfx, s.var.name), rhs, "running_var_unbiased", note=note),
        holds,
        f"for m = {m}, with x_i = E[x] + z_i, E[z_i] = 0 and E[z_i·z_j] = Var[x] for i = j, 0 "
        f"otherwise: {graph} {var} (its definition, with that of μ{sfx}) is a quadratic form "
        f"in the z_i, which at z = t·e_i reads a_i·t² in a polynomial ring, {each}; so "
        f"E{sfx}[{var}] = Var[x]·Σ_i a_i = "
        + ("Var[x]" if coefficient == 1 else f"{coefficient}·Var[x]")
        + " exactly, the right-hand side's coefficient",
    )


def _expectation(s: Symbols, definition: dict[sp.Basic, sp.Expr]) -> sp.Rational | None:
    """Σ_i a_i for the variance's definition Q (μ's substituted), a_i the coefficient of t² in
    Q(E·𝟙 + t·e_i): E[Q(E·𝟙 + z)] = Var·Σ_i a_i when Q is a quadratic form in z (None when
    Q(E·𝟙 + t·e_i) is anything but a·t²). Above JACOBIAN_MAX_M i = 1, 2 stand for all: the
    definition is a sum over the x_i, the same formula in each."""
    E, t = sp.Symbol("E", real=True), sp.Symbol("t", real=True)
    ring = Laurent([E, t])
    m = len(s.x)
    chosen = range(m) if m <= JACOBIAN_MAX_M else (0, 1)
    a = []
    for i in chosen:
        ring.values = {xj: ring.gen[E] for xj in s.x}
        ring.values[s.x[i]] = ring.gen[E] + ring.gen[t]
        ring.memo = {}
        ring.values[s.mu] = ring(definition[s.mu])
        q = ring(definition[s.var])
        t2 = ring.gen[t] ** 2
        coeff = q.coeff(t2)
        if q != t2 * coeff:
            return None  # not a·t²: not a quadratic form in the z_i
        a.append(sp.Rational(coeff.numerator, coeff.denominator))
    if m > JACOBIAN_MAX_M:
        if a[0] != a[1]:
            return None
        return m * a[0]
    return sp.Add(*a)
