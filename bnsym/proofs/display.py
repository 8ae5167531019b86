"""The symbols that only display: the left-hand sides and the sums of the notes' statements.

The proofs state their results with these (``Σᵢ∂ℓ/∂xᵢ = 0``, ``J = (γ/D)·(I − 𝟙𝟙ᵀ/m − …)``);
none is a node of a graph, and no proof reads one as a variable except where it says so (the
sums of the closed form stand for their polynomials there). The renderers know them by their
names (:data:`bnsym.notes.text.DISPLAY` holds how each is written) and import them from here.
SymPy only.
"""

from __future__ import annotations

import sympy as sp

__all__ = [
    "BETA_I",
    "DIAG_GAMMA",
    "DX_CONSTANT",
    "DX_I",
    "DY_I",
    "E_X",
    "EYE",
    "GAMMA_I",
    "HESSIAN_IJ",
    "HESSIAN_JI",
    "JACOBIAN",
    "MEAN_Y",
    "ONES",
    "SPREAD_XHAT",
    "SPREAD_Y",
    "SUM_DX",
    "SUM_DX_XHAT",
    "SUM_DY",
    "SUM_DY_XHAT",
    "SUM_G",
    "SUM_G_XHAT",
    "VAR_X",
    "XHAT_I",
    "XHAT_OUTER",
    "XHAT_OF_H",
    "X_I",
    "Y_I",
    "Y_JUMP",
    "Y_JUMP_AT_0",
    "Y_POPULATION",
    "Y_SCALED",
    "Y_SCALED_ONLY",
    "Y_UNDONE",
    "expected_var",
]

# --- one element i, as the closed form and the statements write it ---------------------------
DX_I, DY_I, XHAT_I = (sp.Symbol(n, real=True) for n in ("dx_i", "dy_i", "xhat_i"))
Y_I, X_I = sp.Symbol("y_i", real=True), sp.Symbol("x_i", real=True)
GAMMA_I, BETA_I = sp.Symbol("gamma_i", real=True), sp.Symbol("beta_i", real=True)

# --- the group's sums -------------------------------------------------------------------------
SUM_DY = sp.Symbol("sum_dy", real=True)  # Σ_j ∂ℓ/∂y_j
SUM_DY_XHAT = sp.Symbol("sum_dy_xhat", real=True)  # Σ_j ∂ℓ/∂y_j · x̂_j
SUM_G = sp.Symbol("sum_gdy", real=True)  # Σ_j γ_j·∂ℓ/∂y_j (γ per element or channel)
SUM_G_XHAT = sp.Symbol("sum_gdy_xhat", real=True)  # Σ_j γ_j·∂ℓ/∂y_j·x̂_j
SUM_DX, SUM_DX_XHAT, MEAN_Y = (sp.Symbol(n) for n in ("sum_dx", "sum_dx_xhat", "mean_y"))

# --- the Jacobian's structure -----------------------------------------------------------------
JACOBIAN = sp.Symbol("J")
EYE, ONES, XHAT_OUTER = (sp.Symbol(n) for n in ("I", "11T", "xhatxhatT"))
DIAG_GAMMA = sp.Symbol("diag_gamma")

# --- the identities' left-hand sides (each condition is in its statement's note) --------------
Y_SCALED = sp.Symbol("y_i(a*x + c)")  # invariance under x → a·x + c
Y_SCALED_ONLY = sp.Symbol("y_i(a*x)")  # invariance under x → a·x (not centred)
Y_UNDONE = sp.Symbol("y_i|undo")  # γ and β set to undo the normalization
HESSIAN_IJ, HESSIAN_JI = sp.Symbol("H_ij"), sp.Symbol("H_ji")

# --- the lecture notes' other forms (bnsym.proofs.forms) --------------------------------------
SPREAD_Y = sp.Symbol("spread_y")  # (1/m)·Σ_i (y_i − β)²
SPREAD_XHAT = sp.Symbol("spread_xhat")  # (1/m)·Σ_i x̂_i²
Y_POPULATION = sp.Symbol("y_i|E[x]")
DX_CONSTANT = sp.Symbol("dx_i|const")
# at ε = 0 (ε outside the root): the jump of y across a constant group c, or across 0
Y_JUMP = sp.Symbol("y_i(c + t*h) - y_i(c - t*h)")
Y_JUMP_AT_0 = sp.Symbol("y_i(t*h) - y_i(-t*h)")
XHAT_OF_H = sp.Symbol("xhat_i(h)")  # x̂_i of the graph at x = h
VAR_X, E_X = sp.Symbol("Var[x]", positive=True), sp.Symbol("E[x]", real=True)


def expected_var(suffix: str, var_name: str) -> sp.Symbol:
    """E_B[σ²_B]: the expectation over groups of the variance symbol ``var_name``, with the
    statistics' subscript ``suffix`` (``"_B"`` for batch norm, ``""`` for a group)."""
    return sp.Symbol(f"E{suffix}[{var_name}]")
