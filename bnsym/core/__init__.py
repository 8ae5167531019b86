"""The symbolic core (SymPy only): the symbols and the graph of a layer for a group of m
values, the chain rule over any graph, the general-m form, the options of a derivation.

It knows no layer by name (the declarations of :mod:`bnsym.family` are its data) and
imports no prover, renderer, code generator or cross-check.
"""
