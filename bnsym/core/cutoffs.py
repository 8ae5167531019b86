"""How far each part of a derivation is carried out, by group size m (shared by the core,
the proofs and the renderers)."""

#: Up to this m, the per-element results are also shown fully in terms of x_1..x_m.
EXPLICIT_MAX_M = 3
#: Up to this m, the m×m Jacobian is built entry by entry and compared with its structure.
JACOBIAN_MAX_M = 16
#: Up to this m, each ∂ℓ/∂x_i step also carries its ``value`` with every earlier step
#: substituted (above, that is O(m²) SymPy terms that nothing needs).
VALUE_MAX_M = 16
#: Up to this m, the chain-rule result is also checked against direct differentiation of the
#: fully explicit forward pass (that costs O(m³)).
DIRECT_MAX_M = 8
#: Above this m, the proofs that the general form (symbolic m) holds for every m are taken
#: from it, not redone for the instance; up to it, both are done (and must agree).
GENERAL_PROOF_MIN_M = 16
#: Above this m, the renderers show the instance's per-element lines once, with i, after the
#: general form, instead of m near-identical lines.
SHORT_MAX_M = 8
