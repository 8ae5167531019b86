"""pytest's root configuration (not shipped): the package's doctests that need PyTorch.

``bnsym/gradcheck/pytorch.py``'s examples run PyTorch; without it (the README's test command
installs the ``test`` extra only) they are not collected. CI installs PyTorch, and
``tests/conftest.py`` stops a CI run that lacks it.
"""

from __future__ import annotations

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") else ["bnsym/gradcheck/pytorch.py"]
