"""What a checkpoint holds the variables of: a model of the registry's table, or a bare ResNet backbone.

Model names and configs come from `jaxvos.models.registry` (its one table); this module adds only the backbones.
Backbone checkpoints (`resnet18`, `resnet50`) carry ImageNet weights imported from torchvision
(`jaxvos convert from-torch --family resnet50`); they have `name`, `config` and `init` like a family, and no
memory or `step`. Training starts a model's encoders from them with `--config.train.init_from=DIR` (or
`key_encoder=DIR`; `jaxvos.convert.graft` has the rule table, `jaxvos.training.checkpoint.init_variables` applies
it); `segment` does not run them.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxvos.convert.rules import FlaxPath, flatten_variables

BACKBONES = {"resnet18": 18, "resnet50": 50}


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
  """A torchvision-layout ResNet trunk cut after layer3 (`jaxvos.backbones.ResNet`)."""
  depth: int = 50
  width: int = 64            # channels of conv1 (64 in torchvision)
  in_channels: int = 3       # input channels of conv1 (3 for RGB; more with mask inputs)
  conv_bias: bool = False    # torchvision convolutions have no bias


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A ResNet trunk as a checkpoint family: `init` and `module`, no memory."""
  config: BackboneConfig

  @property
  def name(self) -> str:
    return f"resnet{self.config.depth}"

  @property
  def module(self):
    from jaxvos.backbones import ResNet  # pylint: disable=g-import-not-at-top
    return ResNet(depth=self.config.depth, width=self.config.width, conv_bias=self.config.conv_bias)

  def init(self, rng: jax.Array, frame_hw: tuple[int, int] = (64, 64)) -> Any:
    return self.module.init(rng, jnp.zeros((1, *frame_hw, self.config.in_channels), jnp.float32))


def names() -> list[str]:
  """Every name a checkpoint's `model.json` may give: the registry's models, then the backbones."""
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  return [*registry.names(), *BACKBONES]


def family_of(name: str) -> str:
  """The family of a model name: the registry's variants share their family's (`stcn-tiny` -> `stcn`, by the
  `<family>-<variant>` naming of the registry's table); a backbone is its own (`resnet50`)."""
  return name if name in BACKBONES else name.split("-")[0]


def build(name: str, config: dict[str, Any]) -> Any:
  """The family (or backbone) `name` with the given config fields (`dataclasses.asdict` of its config).

  Raises:
    ValueError: an unknown name, or config fields the family does not have.
  """
  if name in BACKBONES:
    fields = {field.name for field in dataclasses.fields(BackboneConfig)}
    if set(config) - fields:
      raise ValueError(f"unknown {name} config fields: {', '.join(sorted(set(config) - fields))}")
    if config.get("depth", BACKBONES[name]) != BACKBONES[name]:
      raise ValueError(f"{name} with depth {config['depth']}")
    return Backbone(BackboneConfig(**{**config, "depth": BACKBONES[name]}))
  if name not in names():
    raise ValueError(f"unknown model {name!r}; known: {', '.join(names())}")
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  return registry.from_config(name, config)


def config_dict(family: Any) -> dict[str, Any]:
  """The JSON-able config of a family, as a checkpoint stores it (the registry's serialiser for its models)."""
  if isinstance(family, Backbone):
    return dataclasses.asdict(family.config)
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  return registry.config_dict(family)


def variable_shapes(family: Any) -> dict[FlaxPath, tuple[int, ...]]:
  """Flat path -> shape of every variable of `family`, from `jax.eval_shape` (nothing is computed)."""
  shapes = jax.eval_shape(family.init, jax.random.key(0))
  return {path: tuple(leaf.shape) for path, leaf in flatten_variables(shapes).items()}
