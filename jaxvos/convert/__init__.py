"""PyTorch <-> jaxvos checkpoints: rule tables per family, safetensors checkpoint directories.

- `rules`: PyTorch state-dict keys <-> Flax variable paths (generic layout rules + a short table per family),
  and the check that names missing, unexpected and mis-shaped variables.
- `io`: jaxvos checkpoint directories (`model.json` + `variables.safetensors`): `save_model`, `load_model`.
- `from_torch`: reading official STCN and torchvision ResNet `.pth` files, and writing state dicts back.
"""

from jaxvos.convert.io import load_model, save_model

__all__ = ["load_model", "save_model"]
