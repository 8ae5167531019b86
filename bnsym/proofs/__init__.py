"""Exact proofs over the symbolic core: the closed forms, the Jacobian, the identities and the
lecture notes' forms, each proved from the derivation's own graph (SymPy only)."""
