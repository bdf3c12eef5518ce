"""The sparse executor (`jaxvos.ops.sparse_conv`) equals masked dense compute, and runs only its buckets' tiles."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos.ops import sparse_conv as sc


def _case(seed, stride, tile, n=2, hw=(26, 21), cin=5, cout=7):
  """x, kernel, base and a tile-aligned mask (random tiles, random pixels inside them) for one configuration."""
  r = np.random.RandomState(seed)
  x = jnp.asarray(r.randn(n, *hw, cin), jnp.float32)
  kernel = jnp.asarray(r.randn(3, 3, cin, cout), jnp.float32)
  out_hw = sc.conv_output_hw(hw, 3, stride)
  base = jnp.asarray(r.randn(n, *out_hw, cout), jnp.float32)
  return r, x, kernel, base, out_hw


@pytest.mark.parametrize("stride, tile", [(1, 3), (1, (2, 5)), (2, 2), (2, (4, 3))])
def test_equals_masked_dense_compute_for_random_masks(stride, tile):
  """Pixel masks (`sparse_conv`) and tile decisions (`sparse_conv_tiles`), strides 1 and 2, square and wide
  tiles whose grid overhangs the map, with a `post` function; from no active tile to all."""
  r, x, kernel, base, out_hw = _case(0, stride, tile)
  th, tw = sc.as_tile(tile)
  grid = sc.tile_grid(out_hw, tile)
  post = lambda y: y * 2.0 + 1.0  # noqa: E731
  dense = post(sc.dense_conv(x, kernel, stride))
  by_pixel = jax.jit(lambda m: sc.sparse_conv(x, kernel, m, base, stride=stride, tile=tile, post=post))
  by_tile = jax.jit(lambda a: sc.sparse_conv_tiles(x, kernel, a, base, stride=stride, tile=tile, post=post))
  for fraction in (0.0, 0.15, 0.4, 0.7, 1.0):
    tiles = r.rand(2, *grid) < fraction
    pixels = np.repeat(np.repeat(tiles, th, 1), tw, 2)[:, :out_hw[0], :out_hw[1]]
    mask = jnp.asarray(pixels & (r.rand(2, *out_hw) < 0.7))
    np.testing.assert_allclose(by_pixel(mask), jnp.where(mask[..., None], dense, base), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(by_tile(jnp.asarray(tiles)), jnp.where(jnp.asarray(pixels)[..., None], dense, base),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("buckets", [(0.5,), (0.1, 0.2, 0.3, 0.4)])
def test_every_bucket_gives_the_same_result(buckets):
  """Any active count lands in some bucket; whichever, the output is the masked dense one (unused slots are
  inactive tiles, written back unchanged)."""
  r, x, kernel, base, out_hw = _case(1, 1, 4, hw=(16, 24))
  dense = sc.dense_conv(x, kernel)
  run = jax.jit(lambda m: sc.sparse_conv(x, kernel, m, base, tile=4, buckets=buckets))
  for active in (1, 3, 7, 12, 20, 24):  # of 2 * 4 * 6 = 48 tiles
    tiles = np.zeros(48, bool)
    tiles[r.permutation(48)[:active]] = True
    mask = jnp.asarray(np.repeat(np.repeat(tiles.reshape(2, 4, 6), 4, 1), 4, 2))
    np.testing.assert_allclose(run(mask), jnp.where(mask[..., None], dense, base), atol=1e-5, rtol=1e-5)


def test_bucket_slots_and_executed_fraction():
  assert sc.bucket_slots(10, (0.25, 0.5)) == (0, 3, 5, 10)
  assert sc.bucket_slots(3, (0.1, 0.2, 0.9)) == (0, 1, 3)
  wide = dict(tile=(8, 32), out_hw=(32, 160))  # 4 x 5 tiles, canvas overhead 34 / 32
  activity = jnp.zeros((1, 4, 5)).at[0, 0, :3].set(1.0)  # 3 of 20 tiles -> the 0.25 bucket: 5 slots
  assert float(sc.executed_fraction(activity, buckets=(0.25, 0.5), **wide)) == 0.25
  assert float(sc.executed_fraction(jnp.zeros((1, 4, 5)), buckets=(0.25, 0.5), **wide)) == 0.0
  assert float(sc.executed_fraction(jnp.ones((1, 4, 5)), buckets=(0.25, 0.5), **wide)) == 1.0
  # 4-wide tiles read 6-wide windows: a canvas of more than 0.9 / 1.5 of the tiles costs more than dense
  assert sc.effective_slots((1, 4, 5), 4, (16, 20), buckets=(0.25, 0.5, 0.75)) == (0, 5, 10, 20)


def test_the_gathered_branch_convolves_only_its_slots():
  """The jaxpr of a bucket's branch convolves a canvas of about `slots` tiles, not the whole map."""
  x, kernel = jnp.zeros((1, 64, 192, 8)), jnp.zeros((3, 3, 8, 8))
  base, activity = jnp.zeros((1, 64, 192, 8)), jnp.zeros((1, 8, 8))
  jaxpr = jax.make_jaxpr(lambda x, a: sc.sparse_conv_tiles(x, kernel, a, base, tile=(8, 24)))(x, activity)
  switch = next(e for e in jaxpr.jaxpr.eqns if e.primitive.name == "cond")
  outputs = []
  for branch in switch.params["branches"]:
    convs = [e for e in branch.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    outputs.append(sum(int(np.prod(e.outvars[0].aval.shape[:3])) for e in convs))
  dense = 64 * 192
  slots = sc.effective_slots((1, 8, 8), (8, 24), (64, 192))
  assert len(outputs) == len(slots) + 1  # the last: every tile active
  assert outputs[0] == 0 and outputs[-2] == outputs[-1] == dense  # nothing active: no convolution; all: dense
  every_tile = switch.params["branches"][-1].jaxpr
  assert not [e for e in every_tile.eqns if e.primitive.name == "select_n"]  # no merge with the base
  for slot_count, pixels in zip(slots[1:-1], outputs[1:-2]):
    assert slot_count * 8 * 24 <= pixels <= 1.2 * slot_count * 8 * 24, (slot_count, pixels)


def test_bfloat16_inputs_stay_bfloat16():
  r, x, kernel, base, _ = _case(2, 1, 4)
  mask = jnp.asarray(r.rand(*base.shape[:3]) < 0.3)
  got = jax.jit(lambda *a: sc.sparse_conv(*a, tile=4, buckets=(0.5,)))(
      x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), mask, base.astype(jnp.bfloat16))
  assert got.dtype == jnp.bfloat16
  want = jnp.where(mask[..., None], sc.dense_conv(x, kernel), base)
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=0.3, rtol=0.05)


def test_bench_sparse_prints_a_ratio_per_mask_and_fraction(capsys):
  """`jaxvos bench sparse` on a tiny layer: one line per (mask, fraction); random tiles execute exactly their
  fraction (6 and 12 of the 4 x 6 tiles), blobs at least theirs (every tile that holds an active pixel)."""
  from jaxvos.cli import main as cli  # pylint: disable=g-import-not-at-top
  assert cli.main(["bench", "sparse", "--shape", "1,16,48,4", "--features", "4", "--tile", "4,8", "--repeats", "1",
                   "--fractions", "0.25,0.5", "--masks", "random,blob"]) == 0
  lines = [line for line in capsys.readouterr().out.splitlines() if "sparse/dense time" in line]
  pattern = r"(random|blob) +active (0\.\d\d): sparse/dense time \d+\.\d\d  \(tiles executed (\d\.\d\d);"
  found = [re.match(pattern, line) for line in lines]
  assert all(found) and len(found) == 4, lines
  assert [(m[1], m[2]) for m in found] == [("random", "0.25"), ("random", "0.50"), ("blob", "0.25"), ("blob", "0.50")]
  for m in found:
    assert float(m[3]) == float(m[2]) if m[1] == "random" else float(m[3]) >= float(m[2]), m[0]
