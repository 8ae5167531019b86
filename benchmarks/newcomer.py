"""The anchor for `bnsym derive`: how a newcomer derives batch norm's gradient with SymPy.

Write the loss ℓ = Σ_i dy_i·y_i for the whole batch fully in x_1..x_m, expand it, and call
sympy.diff on it for every x_i. No proofs. Usage: python benchmarks/newcomer.py M
"""

import sys

import sympy as sp

m = int(sys.argv[1])
x = sp.symbols(f"x1:{m + 1}", real=True)
dy = sp.symbols(f"dy1:{m + 1}", real=True)
gamma, beta = sp.symbols("gamma beta", real=True)
eps = sp.Symbol("epsilon", positive=True)

mu = sum(x) / m
var = sp.expand(sum((xi - mu) ** 2 for xi in x) / m)
y = [gamma * (xi - mu) / sp.sqrt(var + eps) + beta for xi in x]
loss = sp.expand(sum(d * yi for d, yi in zip(dy, y, strict=True)))
dx = [sp.diff(loss, xi) for xi in x]
print(len(dx), "gradients")
