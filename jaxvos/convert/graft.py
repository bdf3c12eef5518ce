"""Start a model from parts of other checkpoints: weight grafting by a rule table.

`init_from` (the `train.init_from` config field, `jaxvos.training.checkpoint.init_variables`) names one or more
sources, `SOURCE[,SOURCE...]` with `SOURCE = [PART=]PATH`, applied in order onto the model's fresh initial
variables. How a source's variables land in the model is a `GraftRules` chosen by the pair (source family,
target family) (`rules_for`):

1. A torchvision ResNet-18/50 (`jaxvos convert from-torch --family resnet18|resnet50` writes it as a model
   directory) into the model's encoders (`ENCODERS`): the trunk fills every encoder it fits (STCN's
   `key_encoder` from a ResNet-50 and its `value_encoder` from a ResNet-18; `stcn-r18` takes one ResNet-18 in
   both), or only the one `PART=` names. torchvision's `layer1..3` are renamed to the encoder's stage names
   (`res2` ...). A first convolution with more input channels than the trunk's (the value encoder's mask
   channels after RGB) gets the trunk's kernel in its first channels; the others keep their random
   initialisation (`extra_in_channels="init"`, as the official STCN does: `load_weights_sequential` pads them
   with `nn.init.orthogonal_`), or are zeroed with `"zeros"`. Convolution biases that torchvision has no
   counterpart of (STCN's value encoder) and the parts of an encoder that are not the trunk (the value
   encoder's `fuser`, STM's mask convolutions `conv1_m`/`conv1_o`) stay initialised; so does everything
   outside the encoders (projections, decoder).
2. A trained dense family into the sparse family that extends it (`EXTENDS`, e.g. STCN into SpVOS): every
   variable of the dense model must land in the sparse one, every sparse variable must come from it except the
   added gate parameters, which stay initialised; shapes must agree.
3. A trained family into another config of itself (`GROW`, e.g. `stcn-tiny` with a wider decoder): variables
   whose path and shape agree are copied; those whose shape differs and those only the target has stay
   initialised and are listed. Not a slice copy: the leading block of a trained kernel is not a trained kernel
   of the smaller width, so a variable is either exactly the source's or a fresh initialisation, never a mix.

Whatever a rule does not allow is a one-line `DataError` naming the source and the first offending variables:
source variables with no place in the model, model variables that must be covered but are not, mismatched
shapes. Paths in the rules are module paths without the collection, `/`-joined (`layer1_0/conv1/kernel`);
`params` and `batch_stats` (BatchNorm statistics) go to the same collection they came from.
"""

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

from data_pipelines.errors import DataError
from jaxvos.convert.families import BACKBONES, family_of
from jaxvos.convert.rules import FlaxPath, first_few, reading_order

Flat = dict[FlaxPath, np.ndarray]


@dataclasses.dataclass(frozen=True)
class GraftRules:
  """How one source checkpoint's variables start (part of) a target model.

  Attributes:
    name: what the rule does, for messages.
    prefix: the target module the source's root goes to ("" for the whole model). Target variables outside
      `prefix` (and outside `only`) are not this rule's concern: they keep their initial values.
    renames: (regular expression, replacement) pairs applied in order (`re.sub`) to each source path before
      `prefix` is prepended.
    keep_init: regular expressions matched (in full) against target paths relative to `prefix`: the variables
      that may stay at their initial values when the source has nothing for them.
    mismatched: "error" or "keep_init": what a variable whose source and target shapes differ does.
    extra_in_channels: "init", "zeros" or "error": a convolution kernel whose target has more input channels
      than the source gets the source's in its first channels, the rest initialised or zeroed.
    only: a target module path that limits the rule (`PART=` in `init_from`); "" for all of `prefix`.
  """
  name: str
  prefix: str = ""
  renames: tuple[tuple[str, str], ...] = ()
  keep_init: tuple[str, ...] = ()
  mismatched: str = "error"
  extra_in_channels: str = "error"
  only: str = ""

  @property
  def scope(self) -> str:
    return self.only or self.prefix


def _resnet_into(prefix: str, stages: Sequence[str] = ("layer1", "layer2", "layer3"),
                 keep_init: tuple[str, ...] = ()) -> GraftRules:
  """A torchvision trunk (conv1, bn1, layer1..3) into the encoder `prefix` whose stages are named `stages`."""
  renames = tuple((rf"^{old}_", f"{new}_") for old, new in zip(("layer1", "layer2", "layer3"), stages) if old != new)
  return GraftRules(name=f"ResNet into {prefix}", prefix=prefix, renames=renames, extra_in_channels="init",
                    keep_init=(r"(.*/)?(conv\d|downsample_0)/bias", *keep_init))


_STM_STAGES = ("res2", "res3", "res4")
# family -> its encoders that an ImageNet ResNet trunk can start. GAM's mask encoder sees no RGB (its conv1 takes
# the two mask channels only), so no ImageNet trunk fits it.
ENCODERS: dict[str, tuple[GraftRules, ...]] = {
    "stcn": (_resnet_into("key_encoder", ("res2", "layer2", "layer3")),
             _resnet_into("value_encoder", keep_init=(r"fuser/.*",))),
    "stm": (_resnet_into("Encoder_Q", _STM_STAGES),
            _resnet_into("Encoder_M", _STM_STAGES, keep_init=(r"conv1_[mo]/.*",))),
    "swiftnet": (_resnet_into("Encoder", _STM_STAGES),),
    "gam": (_resnet_into("frame_encoder"),),
    # SpVOS: STCN's encoders; the gates beside the key encoder's 3x3 convolutions keep their initialisation
    "spvos": (_resnet_into("key_encoder", ("res2", "layer2", "layer3"), keep_init=(r"(.*/)?gate\w*/.*",)),
              _resnet_into("value_encoder", keep_init=(r"fuser/.*",))),
}
# (dense family, sparse family) -> the rule: the sparse model is the dense one plus gates named `gate...`.
EXTENDS: dict[tuple[str, str], GraftRules] = {
    ("stcn", "spvos"): GraftRules(name="dense STCN into SpVOS", keep_init=(r"(.*/)?gate\w*/.*",)),
}
GROW = GraftRules(name="into another config of the same family", keep_init=(r".*",), mismatched="keep_init")


def rules_for(source_model: str, target_model: str, part: str = "", *, source_name: str = ""
              ) -> tuple[GraftRules, ...]:
  """The candidate rules for grafting a `source_model` checkpoint into `target_model` (limited to `part`).

  Backbones have one candidate per encoder (every one it fits is filled); other pairs have one rule.

  Raises:
    DataError: naming `source_name` (default `source_model`): no rule for the pair, or a `part` that names no
      encoder of the target.
  """
  source_name = source_name or source_model
  source, target = family_of(source_model), family_of(target_model)
  if source_model in BACKBONES:
    candidates = ENCODERS.get(target, ())
    if part:
      candidates = tuple(rule for rule in candidates if rule.prefix == part)
    if not candidates:
      encoders = ", ".join(rule.prefix for rule in ENCODERS.get(target, ())) or "none"
      raise DataError(source_name, f"no {part or 'encoder'} of {target_model} takes a ResNet trunk (its "
                      f"encoders with a rule in jaxvos.convert.graft.ENCODERS: {encoders})")
    return candidates
  if (source, target) in EXTENDS:
    rule = EXTENDS[(source, target)]
  elif source == target:
    rule = GROW
  else:
    raise DataError(source_name, f"no rule grafts {source_model} into {target_model} (jaxvos.convert.graft: "
                    "ResNet backbones into encoders, a family into itself, and " +
                    ", ".join(f"{a} into {b}" for a, b in EXTENDS) + ")")
  return (dataclasses.replace(rule, only=part),)


def _relative(module: str, prefix: str) -> str | None:
  """`module` relative to `prefix` ("" for the prefix itself), or None when outside it."""
  if not prefix:
    return module
  if module == prefix or module.startswith(prefix + "/"):
    return module[len(prefix) + 1:]
  return None


def _target_path(path: FlaxPath, rules: GraftRules) -> FlaxPath:
  module = "/".join(path[1:])
  for pattern, replacement in rules.renames:
    module = re.sub(pattern, replacement, module)
  module = f"{rules.prefix}/{module}" if rules.prefix else module
  return (path[0], *module.split("/"))


def _widen(source: np.ndarray, initial: np.ndarray, fill: str) -> np.ndarray | None:
  """A conv kernel [kh kw cin cout] with the target's (more) input channels, the source's first; else None."""
  if source.ndim != 4 or initial.ndim != 4 or fill == "error":
    return None
  if source.shape[:2] != initial.shape[:2] or source.shape[3] != initial.shape[3]:
    return None
  if source.shape[2] >= initial.shape[2]:
    return None
  widened = np.zeros_like(initial) if fill == "zeros" else np.array(initial, copy=True)
  widened[:, :, :source.shape[2], :] = source
  return widened


@dataclasses.dataclass
class Graft:
  """The outcome of one rule: the copied values by target path, and what the rule left or could not place."""
  values: Flat
  kept: list[FlaxPath]                    # target variables in scope left initialised (allowed)
  widened: list[tuple[FlaxPath, int]]     # conv kernels given the source's (count) input channels first
  unplaced: list[str]                     # source variables with no target ("a -> b")
  uncovered: list[FlaxPath]               # target variables in scope the source must cover and does not
  mismatched: dict[FlaxPath, str]         # target path -> "is [source shape], the model has [its shape]"

  @property
  def problems(self) -> list[str]:
    if not (self.values or self.unplaced or self.uncovered or self.mismatched):
      return ["no variable of the source fits the model"]
    return [f"{len(items)} {what} ({first_few(items)})" for what, items in (
        ("source variables with no place in the model", self.unplaced),
        ("model variables the source does not have", ["/".join(p) for p in reading_order(self.uncovered)]),
        ("with the wrong shape", [f"{'/'.join(p)} {self.mismatched[p]}" for p in reading_order(self.mismatched)]),
    ) if items]


def apply(source: Mapping[FlaxPath, np.ndarray], target: Mapping[FlaxPath, np.ndarray], rules: GraftRules
          ) -> Graft:
  """What `rules` copies from `source` into `target` (flat variables; nothing is modified)."""
  result = Graft({}, [], [], [], [], {})
  for path in reading_order(source):
    to = _target_path(path, rules)
    if _relative("/".join(to[1:]), rules.scope) is None:
      continue  # outside the part asked for
    if to not in target:
      result.unplaced.append("/".join(path) + ("" if to == path else f" -> {'/'.join(to)}"))
      continue
    value, initial = np.asarray(source[path]), np.asarray(target[to])
    if value.shape == initial.shape:
      result.values[to] = value.astype(initial.dtype)
    elif (widened := _widen(value, initial, rules.extra_in_channels)) is not None:
      result.values[to] = widened.astype(initial.dtype)
      result.widened.append((to, value.shape[2]))
    elif rules.mismatched == "keep_init":
      result.kept.append(to)
    else:
      result.mismatched[to] = f"is {list(value.shape)}, the model has {list(initial.shape)}"
  for path in target:
    done = path in result.values or path in result.kept or path in result.mismatched
    if done or _relative("/".join(path[1:]), rules.scope) is None:
      continue
    inner = _relative("/".join(path[1:]), rules.prefix) or ""
    allowed = any(re.fullmatch(pattern, inner) for pattern in rules.keep_init)
    (result.kept if allowed else result.uncovered).append(path)
  return result


def graft(source: Mapping[FlaxPath, np.ndarray], target: Mapping[FlaxPath, np.ndarray],
          candidates: Sequence[GraftRules], *, source_name: str, model: str) -> tuple[Flat, list[str]]:
  """Copies `source` into `target` by every candidate rule that fits; returns (new flat variables, notes).

  Raises:
    DataError: no candidate fits: one line naming `source_name` and the first offending variables of the
      candidate that came closest.
  """
  outcomes = [(rules, apply(source, target, rules)) for rules in candidates]
  fitting = [(rules, outcome) for rules, outcome in outcomes if not outcome.problems]
  if not fitting:
    rules, outcome = min(outcomes, key=lambda item: len(item[1].unplaced) + len(item[1].uncovered) +
                         len(item[1].mismatched))
    raise DataError(source_name, f"does not fit the {model} model ({rules.name}): " + "; ".join(outcome.problems))
  variables, notes = dict(target), []
  for rules, outcome in fitting:
    variables.update(outcome.values)
    notes.append(f"{source_name}: {rules.name}: copied {len(outcome.values)} variables" + (
        f", {len(outcome.kept)} kept at their initial values "
        f"({first_few(['/'.join(p) for p in reading_order(outcome.kept)])})"
        if outcome.kept else ""))
    for path, channels in outcome.widened:
      notes.append(f"{'/'.join(path)}: the first {channels} of {np.shape(target[path])[2]} input channels "
                   f"copied, the others {'zeroed' if rules.extra_in_channels == 'zeros' else 'initialised'}")
  return variables, notes


def parse_sources(init_from: str) -> list[tuple[str, str]]:
  """`"[PART=]PATH[,[PART=]PATH...]"` -> [(part, path)] (part "" for the whole model or every encoder)."""
  sources = []
  for item in (item.strip() for item in init_from.split(",")):
    if not item:
      continue
    match = re.fullmatch(r"(\w+(?:/\w+)*)=(.+)", item)
    sources.append((match.group(1), match.group(2)) if match else ("", item))
  return sources
