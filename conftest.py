"""pytest's root configuration (not shipped): the package's doctests that need PyTorch.

``bnsym/gradcheck/pytorch.py``'s examples run PyTorch, and the tests' PyTorch corpora import
it; without it (the README's test command installs the ``test`` extra only) they are not
collected. CI installs PyTorch, and
``tests/conftest.py`` stops a CI run that lacks it.
"""

from __future__ import annotations

import importlib.util

#: modules that import PyTorch at the top and hold no tests of their own (the doctest collection
#: imports every module): not collected without it
NEED_TORCH = [
    "bnsym/gradcheck/pytorch.py",
    "bnsym/gradcheck/torch_calls.py",
    "tests/corpus_jvp.py",
    "tests/corpus_lowp.py",
]
collect_ignore = [] if importlib.util.find_spec("torch") else NEED_TORCH
