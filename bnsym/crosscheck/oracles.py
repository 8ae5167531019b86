"""The oracles of ``bnsym check``: for each shipped layer, its PyTorch counterpart.

(First step of the one oracle table; see the crosscheck modules.)
"""

from __future__ import annotations

#: layer name -> the name of torch.nn.functional's fused kernel of it
TORCH_NAMES: dict[str, str] = {
    "batchnorm": "batch_norm",
    "layernorm": "layer_norm",
    "instancenorm": "instance_norm",
    "groupnorm": "group_norm",
    "rmsnorm": "rms_norm",
}
