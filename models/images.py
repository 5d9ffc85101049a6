"""PNG grids of images (reconstructions, samples): a pure "make the grid" step and a thin writer.

matplotlib is imported lazily, inside `save_png`, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.checkpoint import atomic_write


def make_grid(images: torch.Tensor | np.ndarray, image_shape: tuple[int, int], ncol: int,
              pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """Tile images (N, P) with values in [0, 1] into one (rows·(H+pad)+pad, ncol·(W+pad)+pad)
    array, row-major, separated by mid-grey padding (distinct from both ink and background)."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    h, w = image_shape
    n = images.shape[0]
    tiles = np.clip(images.reshape(n, h, w), 0.0, 1.0)
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = tiles[i]
    return grid


def reconstruction_grid(inputs: torch.Tensor, recons: torch.Tensor,
                        image_shape: tuple[int, int], ncol: int = 8) -> np.ndarray:
    """The inputs' rows first, then the reconstructions' rows in the same order: input i and
    its reconstruction share a column (only whole rows are kept, so they stay aligned)."""
    ncol = max(1, min(ncol, inputs.shape[0]))
    n = (inputs.shape[0] // ncol) * ncol
    return make_grid(torch.cat([inputs[:n].cpu(), recons[:n].cpu()], dim=0), image_shape, ncol)


def save_png(grid: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write a grey-level grid (values in [0, 1]) as a PNG, atomically; ``scale`` repeats each
    pixel so small images (8×8 digits) stay visible."""
    import matplotlib.image as mpimg  # lazy: only the grid writer needs matplotlib

    if scale > 1:
        grid = np.kron(grid, np.ones((scale, scale), dtype=grid.dtype))
    return atomic_write(
        path, lambda tmp: mpimg.imsave(tmp, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    )
