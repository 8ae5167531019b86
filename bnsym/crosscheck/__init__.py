"""``bnsym check``: generated code, the NumPy references, numerical derivatives and PyTorch
compared on seeded data (:mod:`bnsym.crosscheck.first` for order 1,
:mod:`bnsym.crosscheck.higher` for orders 2 and 3), one path for every layer: its oracles from
the one table :mod:`bnsym.crosscheck.oracles`, its data and groups from its declaration
(:mod:`bnsym.crosscheck.data`), PyTorch's kernel or the layer built from elementary operations
(:mod:`bnsym.crosscheck.pytorch`)."""
