"""``bnsym check``: generated code, the NumPy references, numerical derivatives and PyTorch
compared on seeded data (:mod:`bnsym.crosscheck.first` for order 1,
:mod:`bnsym.crosscheck.higher` for orders 2 and 3)."""
