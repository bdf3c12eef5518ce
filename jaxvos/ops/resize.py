"""PyTorch-compatible resizing of NHWC arrays.

`jax.image.resize` antialiases when downsampling and PyTorch's `F.interpolate` does not, so models whose weights
come from PyTorch use `resize_bilinear` here: `F.interpolate(..., mode="bilinear", align_corners=False,
antialias=False)`, written as two small interpolation matrices (one per spatial axis) applied with einsum, which
is exact, differentiable and fast on every backend.
"""

import functools

import einops
import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(in_size: int, out_size: int, scale: float | None) -> np.ndarray:
  """[out, in] weights of PyTorch's half-pixel bilinear interpolation along one axis.

  `scale` is PyTorch's `scale_factor` when one was given (the source coordinate uses 1 / scale_factor, not
  in / out), else None.
  """
  ratio = 1.0 / scale if scale is not None else in_size / out_size
  source = np.maximum((np.arange(out_size) + 0.5) * ratio - 0.5, 0.0)
  lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  frac = (source - lower).astype(np.float32)
  matrix = np.zeros((out_size, in_size), np.float32)
  np.add.at(matrix, (np.arange(out_size), lower), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), upper), frac)
  return matrix


def resize_bilinear(x: jax.Array, out_hw: tuple[int, int] | None = None, *,
                    scale_factor: float | None = None) -> jax.Array:
  """`F.interpolate(x, size=out_hw or scale_factor=..., mode="bilinear", align_corners=False)` on [... h w c]."""
  h, w = x.shape[-3], x.shape[-2]
  if out_hw is None:
    if scale_factor is None:
      raise ValueError("give out_hw or scale_factor")
    out_hw = (int(np.floor(h * scale_factor)), int(np.floor(w * scale_factor)))
  if out_hw == (h, w) and scale_factor in (None, 1.0):
    return x
  rows = jnp.asarray(_interpolation_matrix(h, out_hw[0], scale_factor), x.dtype)
  cols = jnp.asarray(_interpolation_matrix(w, out_hw[1], scale_factor), x.dtype)
  precision = jax.lax.Precision.HIGHEST
  x = jnp.einsum("Hh,...hwc->...Hwc", rows, x, precision=precision)
  return jnp.einsum("Ww,...hwc->...hWc", cols, x, precision=precision)


def pad_to_multiple(x: jax.Array, multiple: int = 16) -> tuple[jax.Array, tuple[int, int, int, int]]:
  """Zero-pads [... h w c] to multiples of `multiple`, split evenly (the extra pixel after), as STM/STCN do.

  Returns the padded array and the padding (top, bottom, left, right) for `unpad`.
  """
  h, w = x.shape[-3], x.shape[-2]
  pad_h, pad_w = (-h) % multiple, (-w) % multiple
  pads = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
  widths = [(0, 0)] * (x.ndim - 3) + [pads[:2], pads[2:], (0, 0)]
  return jnp.pad(x, widths), pads


def unpad(x: jax.Array, pads: tuple[int, int, int, int]) -> jax.Array:
  """Inverse of `pad_to_multiple` on [... h w c]."""
  top, bottom, left, right = pads
  return x[..., top:x.shape[-3] - bottom, left:x.shape[-2] - right, :]


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
  """[... h w c] -> [... h/block w/block (c block block)], the reversed sub-pixel downsampling of SwiftNet.

  Output channels are ordered (channel, row offset, column offset), as `F.pixel_unshuffle`, so weights that
  consume them carry over to PyTorch unchanged.
  """
  return einops.rearrange(x, "... (h i) (w j) c -> ... h w (c i j)", i=block, j=block)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  """Inverse of `space_to_depth` (`F.pixel_shuffle`): [... h w (c block block)] -> [... h*block w*block c]."""
  return einops.rearrange(x, "... h w (c i j) -> ... (h i) (w j) c", i=block, j=block)
