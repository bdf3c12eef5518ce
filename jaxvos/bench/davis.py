"""`bench davis`: trained models side by side on DAVIS sequences: J&F, MACs per frame as executed, wall-clock.

Every model (a model directory: a training run's `export/...`, `jaxvos convert` output, or `default` for the
packaged model) segments the same sequences from their first frame's objects (the semi-supervised protocol,
scored with the jaxvos J&F as `jaxvos evaluate` scores), **interleaved frame by frame in one process**, so the
load of a shared machine hits all of them alike. Per model:

- J&F, J and F over the sequences, and J&F per object (`<sequence>_<id>`: a few short sequences are a noisy
  estimate, so the spread is printed and kept);
- ms per frame: the median over every frame but each sequence's first (streaming, as `jaxvos segment` runs a
  video: one jitted step per frame, uint8 RGB in, id map out). The first sequence is segmented once untimed
  before, so compilations (SpVOS compiles one program per bucket of active tiles) fall outside the timing;
- GMAC per frame: each frame's count (`bench flops`: the branches the frame took, so a memory encoding counts on
  the frames it runs and SwiftNet's read on its memory's fill) averaged over the timed frames, `dense` with
  every gated layer at its dense count, `executed` with each gated layer weighted by the fraction of its output
  it computed on these frames (the `executed/...` aux outputs of SpVOS; a dense model executes everything);
- the mean of every other aux output over the frames (in `--out`); SwiftNet's memory-update rate and SpVOS's read
  guard (`read_fraction`) are printed.

The last columns are ratios to the first model: put the model under test first and its dense twin second.
`--dense-twins` adds, after each gated checkpoint, the same weights with every gate forced to compute (the
weights' own dense twin: mixed sparse training keeps them valid dense). `--variants` adds, after each
checkpoint whose config has the field, the same weights with one config field changed at inference
(`memory.match_fraction=0.25`: SwiftNet's pixel-wise match; `memory.every=5`: GAM's context updated every 5th
frame; `compute_threshold=0.7`: SpVOS's gates), so what a test-time knob costs in J&F and saves in time is
measured on trained weights in the same run. `--out` keeps the rows (with each
model's parameter count) as JSON; `--plot` draws J&F against frames per second, one bubble per model whose area
is its executed MACs per frame (the form of Fig. 7c of the GAM paper); `--plot-only` redraws it from `--out`.

    python -m jaxvos bench davis --checkpoints RUNS/spvos-davis-cpu/export/final,default \\
        --davis-root ../shared/data/davis2016-240p --sequences dog-agility,motorbike,soccerball
"""

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

EXECUTED = "executed/"


def add_arguments(parser) -> None:
  parser.add_argument("--checkpoints", required=True, metavar="DIR[,DIR...]", help="model directories to "
                      "compare (`default`: the packaged default model); ratios are to the first")
  parser.add_argument("--davis-root", required=True, help="a DAVIS root (JPEGImages/, Annotations/)")
  parser.add_argument("--resolution", default="240p", help="the DAVIS resolution folder (default 240p)")
  parser.add_argument("--sequences", required=True, metavar="LIST", help="comma-separated sequence names")
  parser.add_argument("--size", type=int, default=0, help="shorter side every model sees (default: the first "
                      "checkpoint's working size)")
  parser.add_argument("--max-frames", type=int, default=0, help="frames per sequence (default: all)")
  parser.add_argument("--dense-twins", action="store_true", help="also run each gated checkpoint with every "
                      "gate forced to compute")
  parser.add_argument("--variants", default="", metavar="LIST", help="comma-separated FIELD=VALUE (a dotted "
                      "config path, e.g. memory.match_fraction=0.25; VALUE is JSON: tile_pixels=[16,48]): each also "
                      "runs every checkpoint whose config has FIELD with it changed")
  parser.add_argument("--out", default="", help="write the rows to this JSON file")
  parser.add_argument("--plot", default="", help="draw J&F against frames per second (a PNG; bubble area: "
                      "executed MACs per frame)")
  parser.add_argument("--plot-only", action="store_true", help="redraw --plot from --out without measuring")


@dataclasses.dataclass
class _Model:
  label: str
  family: Any
  variables: Any
  times: list[float] = dataclasses.field(default_factory=list)
  predictions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  executed: dict[str, float] = dataclasses.field(default_factory=dict)  # layer -> sum of per-frame fractions
  aux: dict[str, float] = dataclasses.field(default_factory=dict)  # other aux key -> sum of per-frame means
  frames: int = 0
  macs: dict[str, float] = dataclasses.field(default_factory=dict)  # layer -> sum of per-frame MACs
  counters: dict[tuple, Any] = dataclasses.field(default_factory=dict)  # state shapes -> jitted MAC counter

  @property
  def dense_macs(self) -> dict[str, float]:
    """MACs per layer per frame, gated layers at their dense count (the mean over the timed frames)."""
    return {name: total / self.frames for name, total in self.macs.items()}


def run(args) -> int:
  if args.plot_only:
    if not (args.out and args.plot):
      raise SystemExit("bench davis: --plot-only needs --out (the results) and --plot (the picture)")
    with open(args.out) as f:
      plot(json.load(f), args.plot)
    print(f"wrote {args.plot}")
    return 0
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.convert import io  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import Segmenter  # pylint: disable=g-import-not-at-top
  paths = [io.DEFAULT_MODEL if p == "default" else p for p in args.checkpoints.split(",")]
  size = args.size or io.working_size(paths[0])
  models = []
  for path in paths:
    loaded = _Model(label(path), *io.load_model(path))
    models.append(loaded)
    if args.dense_twins and "force" in io.read_meta(path)["config"]:
      models.append(_forced_dense(loaded, path))
    for item in split_list(args.variants):
      try:
        variant = _with_field(loaded, path, item)
      except ValueError as error:
        print(f"error: --variants {item}: {error}", file=sys.stderr)
        return 2
      models += [variant] if variant else []
  videos = _videos(args)
  segmenters = [Segmenter(m.family, m.variables, size=size) for m in models]
  print(f"{', '.join(m.label for m in models)}: {len(videos)} sequences ({sum(len(v.frames) for v in videos)} "
        f"frames) at a shorter side of {size}, interleaved frame by frame; {jax.devices()[0].device_kind}",
        flush=True)
  _segment(videos[0], models, segmenters, timed=False)  # compiles every program the timed run needs
  for video in videos:
    _segment(video, models, segmenters, timed=True)
    print(f"  {video.name}: {len(video.frames)} frames", flush=True)
  results = {"sequences": [v.name for v in videos], "size": size, "device": jax.devices()[0].device_kind,
             "rows": _report(models, videos)}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
    print(f"wrote {args.out}")
  if args.plot:
    plot(results, args.plot)
    print(f"wrote {args.plot}")
  return 0


def label(path: str) -> str:
  """A checkpoint's short name: `default`, `<run>/export/<name>`, or the directory's name."""
  from jaxvos.convert import io  # pylint: disable=g-import-not-at-top
  if os.path.realpath(path) == os.path.realpath(io.DEFAULT_MODEL):
    return "default"
  parts = os.path.normpath(path).split(os.sep)
  return "/".join(parts[-3:]) if len(parts) >= 3 and parts[-2] == "export" else parts[-1]


def _forced_dense(model: _Model, path: str) -> _Model:
  """The same weights with every gate forced to compute (and neither the change guard nor the read guard, which
  would reuse)."""
  family = family_with_field(path, "force=compute", "change_threshold=null", "read_threshold=null")
  return _Model(f"{model.label} forced dense", family, model.variables)


def _with_field(model: _Model, path: str, item: str) -> _Model | None:
  """The same weights with the config field `item` changed (`family_with_field`); None when the checkpoint's
  config has no such field."""
  family = family_with_field(path, item)
  return None if family is None else _Model(f"{model.label} {item}", family, model.variables)


def split_list(text: str) -> list[str]:
  """"a=1,b=[2,3],c" -> ["a=1", "b=[2,3]", "c"]: split at the commas outside brackets and quotes."""
  items, depth, quoted, start = [], 0, False, 0
  for i, char in enumerate(text):
    if char == '"':
      quoted = not quoted
    elif not quoted and char in "[{":
      depth += 1
    elif not quoted and char in "]}":
      depth -= 1
    elif char == "," and depth == 0 and not quoted:
      items.append(text[start:i])
      start = i + 1
  items.append(text[start:])
  return [item for item in items if item]


def parse_field(item: str) -> tuple[str, Any]:
  """"a.b=value" -> ("a.b", value): the value JSON, or the bare string where it is not JSON."""
  field, _, text = item.partition("=")
  try:
    return field, json.loads(text)
  except json.JSONDecodeError:
    return field, text


def family_with_field(path: str, *items: str):
  """The family of checkpoint `path` with the config fields `items` ("a.b=value", a dotted path) changed; None
  when its config lacks one of them."""
  from jaxvos.convert import families, io  # pylint: disable=g-import-not-at-top
  meta = io.read_meta(path)
  # the family's whole config: fields added since the checkpoint was written take their defaults
  config = families.config_dict(families.build(meta["family"], meta["config"]))
  for item in items:
    field, value = parse_field(item)
    *parents, leaf = field.split(".")
    node = config
    for name in parents:
      node = node.get(name) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
      return None
    node[leaf] = value
  return families.build(meta["family"], config)


def _videos(args) -> list:
  from jaxvos.training import data as data_lib, validation  # pylint: disable=g-import-not-at-top
  from data_pipelines.errors import DataError  # pylint: disable=g-import-not-at-top
  names = [n for n in args.sequences.split(",") if n]
  by_name = {s.name: s for s in data_lib.davis_videos(args.davis_root, args.resolution)}
  missing = [n for n in names if n not in by_name]
  if missing:
    raise DataError(os.path.join(args.davis_root, "JPEGImages", args.resolution), f"no sequence {missing[0]}")
  return validation.load_videos([by_name[n] for n in names], args.max_frames or None)


def _segment(video, models: list[_Model], segmenters: list, *, timed: bool) -> None:
  """Segments `video` with every model, frame by frame in turn; keeps times, predictions and gate statistics."""
  from jaxvos.training import validation  # pylint: disable=g-import-not-at-top
  first = validation.first_frame_objects(video)
  ids = [int(i) for i in np.unique(first) if i]
  streams = [segmenter.stream(ids) for segmenter in segmenters]
  predictions = [[] for _ in models]
  for t, frame in enumerate(video.frames):
    for model, stream, predicted in zip(models, streams, predictions):
      if timed and t > 0:
        _count_macs(model, stream, frame)
      start = time.perf_counter()
      predicted.append(stream(frame, first if t == 0 else None))  # host ids: the frame's work is done
      if timed and t > 0:
        model.times.append(time.perf_counter() - start)
  if not timed:
    return
  for model, stream, predicted in zip(models, streams, predictions):
    model.predictions[video.name] = np.stack(predicted)
    steps = len(video.frames) - 1
    for key, stats in stream.aux_stats().items():
      sums, name = (model.executed, key[len(EXECUTED):]) if key.startswith(EXECUTED) else (model.aux, key)
      sums[name] = sums.get(name, 0.0) + stats["mean"] * steps
    model.frames += steps


def _count_macs(model: _Model, stream, frame: np.ndarray) -> None:
  """Adds the MACs per layer of `model`'s step on `frame` from the stream's state (before the step) to
  `model.macs`, gated layers at their dense count: `jaxvos.bench.flops.step_counter`, one per state shape."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxvos.bench import flops  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import frames as frames_lib  # pylint: disable=g-import-not-at-top
  x = frames_lib.preprocess(jnp.asarray(frame[None]), stream.geometry)
  objects = len(stream.slot_ids)
  args = (model.variables, stream.state, x, jnp.zeros((1, objects, *stream.geometry.model_hw), jnp.float32),
          jnp.zeros((1, objects), bool))
  key = tuple((leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(args[1:]))
  if key not in model.counters:
    model.counters[key] = flops.step_counter(model.family, *args)
  for name, macs in model.counters[key](*args).items():
    model.macs[name] = model.macs.get(name, 0.0) + float(macs)


def _report(models: list[_Model], videos: list) -> list[dict]:
  """Prints the table; returns its rows."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.bench import flops  # pylint: disable=g-import-not-at-top
  from jaxvos.training import validation  # pylint: disable=g-import-not-at-top
  rows = []
  for model in models:
    results = validation.score(videos, model.predictions)
    scores = validation.summary(results)
    fractions = {name: total / model.frames for name, total in model.executed.items()}
    executed = sum(flops.executed_macs(model.dense_macs, fractions).values())
    ms = float(np.median(model.times)) * 1e3
    rows.append({"model": model.label, "family": model.family.name, "j_and_f": scores["j_and_f"],
                 "j": scores["j_mean"], "f": scores["f_mean"], "ms_per_frame": ms, "fps": 1e3 / ms,
                 "gmac_dense": sum(model.dense_macs.values()) / 1e9, "gmac_executed": executed / 1e9,
                 "params": int(sum(np.size(p) for p in jax.tree.leaves(model.variables["params"]))),
                 "per_object": {o.name: (o.j_mean + o.f_mean) / 2 for o in results.objects()},
                 "aux": {key: total / model.frames for key, total in model.aux.items()}})
  base = rows[0]
  print(f"\n{'model':<34} {'J&F':>6} {'J':>6} {'F':>6} {'ms/frame':>9} {'GMAC dense':>11} {'executed':>9} "
        f"{'time / first':>13} {'MAC / first':>12}")
  for r in rows:
    print(f"{r['model']:<34} {r['j_and_f']:6.3f} {r['j']:6.3f} {r['f']:6.3f} {r['ms_per_frame']:9.1f} "
          f"{r['gmac_dense']:11.3f} {r['gmac_executed']:9.3f} {r['ms_per_frame'] / base['ms_per_frame']:13.2f} "
          f"{r['gmac_executed'] / base['gmac_executed']:12.2f}")
  print("J&F per object: " + ", ".join(base["per_object"]))
  for r in rows:
    print(f"  {r['model']:<32} " + " ".join(f"{score:6.3f}" for score in r["per_object"].values()))
  for r in rows:
    if r["gmac_executed"] < r["gmac_dense"]:
      print(f"{r['model']}: executes {r['gmac_executed'] / r['gmac_dense']:.2f} of its dense MACs")
    if "read_fraction" in r["aux"]:  # SpVOS's read guard
      print(f"{r['model']}: reads memory at {r['aux']['read_fraction']:.2f} of the query positions")
    if r["aux"].get("trigger"):  # SwiftNet's variation-aware trigger
      print(f"{r['model']}: memory updated on {r['aux']['trigger']:.3f} of the frames after the first "
            f"(one in {1 / r['aux']['trigger']:.1f})")
  return rows


_SIZE = (520, 720)  # h, w
_MARGIN = (48, 64, 44, 24)  # top, left, bottom, right


def plot(results: dict, path: str) -> None:
  """J&F against frames per second, one bubble per row (area: executed GMAC per frame), as a PNG (Pillow)."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  from jaxvos.bench.memory import family_colour  # pylint: disable=g-import-not-at-top
  rows = results["rows"]
  h, w = _SIZE
  top, left, bottom, right = _MARGIN
  picture = Image.new("RGB", (w, h), "white")
  draw = ImageDraw.Draw(picture)
  draw.text((left, 8), f"J&F against frames per second: {', '.join(results['sequences'])} at a shorter side of "
            f"{results['size']}, {results['device']}", fill="black")
  draw.text((left, 24), "bubble area: executed GMAC per frame", fill="black")
  draw.rectangle([left, top, w - right, h - bottom], outline="black")
  fps_max = max(r["fps"] for r in rows) * 1.2
  scores = [r["j_and_f"] for r in rows]
  low, high = max(0.0, min(scores) - 0.05), min(1.0, max(scores) + 0.05)
  to_x = lambda fps: left + fps / fps_max * (w - left - right)  # noqa: E731
  to_y = lambda s: h - bottom - (s - low) / (high - low) * (h - top - bottom)  # noqa: E731
  for tick in _ticks(0.0, fps_max):
    draw.line([(to_x(tick), top), (to_x(tick), h - bottom)], fill=(230, 230, 230))
    draw.text((to_x(tick) - 8, h - bottom + 6), f"{tick:g}", fill="black")
  for tick in _ticks(low, high):
    draw.line([(left, to_y(tick)), (w - right, to_y(tick))], fill=(230, 230, 230))
    draw.text((8, to_y(tick) - 6), f"{tick:.2f}", fill="black")
  draw.text(((w - left) // 2, h - 18), "frames per second", fill="black")
  draw.text((8, top - 14), "J&F", fill="black")
  largest = max(r["gmac_executed"] for r in rows)
  bubbles = [(r, to_x(r["fps"]), to_y(r["j_and_f"]), max(3.0, 30 * math.sqrt(r["gmac_executed"] / largest)))
             for r in sorted(rows, key=lambda r: -r["gmac_executed"])]  # small bubbles drawn over large ones
  for r, x, y, radius in bubbles:
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=family_colour(r["family"]),
                 outline="black")
  taken = [(x - radius, y - radius, x + radius, y + radius) for _, x, y, radius in bubbles]
  for r, x, y, radius in bubbles:
    text = f"{r['model']} ({r['j_and_f']:.3f})"
    box = _label_box(draw.textlength(text), x, y, radius, taken, (4, top, w - 4, h - bottom))
    taken.append(box)
    draw.text((box[0], box[1]), text, fill="black")
  picture.save(path)


def _label_box(width: float, x: float, y: float, radius: float, taken: list, frame: tuple) -> tuple:
  """Where a bubble's label goes: the first box beside it (right, then left, then shifted up or down), above or
  below it, that lies inside `frame` and overlaps no box in `taken` (bubbles and labels); on the right if none."""
  def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
  candidates = []
  for shift in (0, 14, -14, 28, -28, 42, -42):
    candidates += [(x + radius + 4, y - 6 + shift), (x - radius - 4 - width, y - 6 + shift)]
  candidates += [(x - width / 2, y - radius - 16), (x - width / 2, y + radius + 2)]
  for left, top in candidates:
    box = (left, top, left + width, top + 12)
    inside = frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3]
    if inside and not any(overlaps(box, other) for other in taken):
      return box
  return (x + radius + 4, y - 6, x + radius + 4 + width, y + 6)


def _ticks(low: float, high: float) -> list[float]:
  """About 5 round values between low and high."""
  step = 10 ** math.floor(math.log10((high - low) / 5))
  step *= next(m for m in (1, 2, 5, 10) if (high - low) / (step * m) <= 6)
  return [k * step for k in range(math.ceil(low / step), math.floor(high / step) + 1)]
