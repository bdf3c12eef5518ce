"""PyTorch-compatible resizing of NHWC arrays.

`jax.image.resize` antialiases when downsampling and PyTorch's `F.interpolate` does not, so models whose weights
come from PyTorch use `resize_bilinear` here: `F.interpolate(..., mode="bilinear", align_corners=False,
antialias=False)`, as two gathers and a lerp per spatial axis: PyTorch's arithmetic, differentiable, and linear in
the output size (an interpolation matrix would cost a matmul as large as the feature map).
"""

import functools

import einops
import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def _taps(in_size: int, out_size: int, scale: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PyTorch's half-pixel bilinear taps along one axis: (lower index, upper index, weight of upper) per output.

  `scale` is PyTorch's `scale_factor` when one was given (the source coordinate uses 1 / scale_factor, not
  in / out), else None.
  """
  ratio = 1.0 / scale if scale is not None else in_size / out_size
  source = np.maximum((np.arange(out_size) + 0.5) * ratio - 0.5, 0.0)
  lower = np.minimum(np.floor(source).astype(np.int32), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  return lower, upper, (source - lower).astype(np.float32)


def _interpolate_axis(x: jax.Array, axis: int, taps: tuple[np.ndarray, np.ndarray, np.ndarray]) -> jax.Array:
  """Two gathers and a lerp along `axis`: `(1 - f) x[lower] + f x[upper]`, PyTorch's arithmetic."""
  lower, upper, frac = taps
  shape = [1] * x.ndim
  shape[axis] = len(frac)
  frac = jnp.asarray(frac.reshape(shape), x.dtype)
  return jnp.take(x, lower, axis=axis) * (1 - frac) + jnp.take(x, upper, axis=axis) * frac


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
  x = _interpolate_axis(x, x.ndim - 3, _taps(h, out_hw[0], scale_factor))
  return _interpolate_axis(x, x.ndim - 2, _taps(w, out_hw[1], scale_factor))


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
