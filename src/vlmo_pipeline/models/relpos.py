"""Relative position bias of VLMo: index builders, table gather, and a torch-only table resize.

One shared parameter ``relative_position_bias_table`` of shape ``(rows, num_heads * depth)`` holds the
bias of every layer; column ``layer * H + head`` belongs to that layer/head. Row layout (W = patches per
side, ``L0 = max_text_len_of_initckpt``; numbers for W=14, L0=196)::

    0 .. (2W-1)²-1        image patch→patch, BEiT rule (query minus key)          0..728
    num-3, num-2, num-1   image CLS→any, any→CLS, CLS→CLS  (num=(2W-1)²+3)          729, 730, 731
    num, num+1            text→image, image→text (one scalar per head/layer)       732, 733
    num+2 .. all-4        text token→token (key minus query, offset L0-2)          734..1122
    all-3, all-2, all-1   text CLS→any, any→text CLS, CLS→CLS  (all=num+2·L0+2)   1123, 1124, 1125
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RelPosLayout:
    """Row counts of the shared relative-position table for one image grid and text budget."""

    grid_size: int
    max_text_len_of_initckpt: int

    @property
    def num_image_distances(self) -> int:
        """``num_relative_distance`` of the official code: (2W-1)² + 3."""
        return (2 * self.grid_size - 1) ** 2 + 3

    @property
    def num_text_distances(self) -> int:
        return 2 * self.max_text_len_of_initckpt

    @property
    def num_rows(self) -> int:
        """``all_num_relative_distance``: image + text + 2 cross-modal rows."""
        return self.num_image_distances + self.num_text_distances + 2

    @property
    def num_extra_rows(self) -> int:
        """Rows after the (2W-1)² patch block (kept verbatim by a resize)."""
        return self.num_rows - (2 * self.grid_size - 1) ** 2


def image_relative_position_index(grid_size: int) -> torch.Tensor:
    """(1+W², 1+W²) int64 index of the image-only pass (BEiT rule, CLS rows at the end)."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(grid_size, device="cpu"), torch.arange(grid_size, device="cpu"), indexing="ij")
    ).flatten(1)  # (2, W²): (row, col) of every patch
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # query minus key, (W², W², 2)
    relative = relative + (grid_size - 1)
    patch_index = relative[..., 0] * (2 * grid_size - 1) + relative[..., 1]
    num_distances = RelPosLayout(grid_size, 0).num_image_distances
    n = grid_size * grid_size + 1
    index = torch.zeros(n, n, dtype=torch.long, device="cpu")
    index[1:, 1:] = patch_index
    index[0, :] = num_distances - 3  # CLS query -> any key
    index[:, 0] = num_distances - 2  # any query -> CLS key
    index[0, 0] = num_distances - 1
    return index


def text_relative_position_index(max_text_len: int, layout: RelPosLayout) -> torch.Tensor:
    """(T, T) int64 index of the text-only pass; positions ≥ 1 use key minus query."""
    if max_text_len > layout.max_text_len_of_initckpt:
        raise ValueError(
            f"text length {max_text_len} exceeds max_text_len_of_initckpt={layout.max_text_len_of_initckpt}"
        )
    positions = torch.arange(max_text_len - 1, device="cpu")
    key_minus_query = positions[None, :] - positions[:, None]
    min_distance = 2 - layout.max_text_len_of_initckpt
    text_rows = key_minus_query - min_distance + layout.num_image_distances + 2
    index = torch.zeros(max_text_len, max_text_len, dtype=torch.long, device="cpu")
    index[1:, 1:] = text_rows
    index[0, :] = layout.num_rows - 3
    index[:, 0] = layout.num_rows - 2
    index[0, 0] = layout.num_rows - 1
    return index


def fused_relative_position_index(
    text_index: torch.Tensor, image_index: torch.Tensor, layout: RelPosLayout
) -> torch.Tensor:
    """(T+I, T+I) index of the fused pass: text first, image second, cross pairs on two rows.

    Index tensors are always built on the CPU (also under a ``torch.device("meta")`` context).
    """
    num_text, num_image = text_index.shape[0], image_index.shape[0]
    text_to_image = torch.full((num_text, num_image), layout.num_image_distances, dtype=torch.long, device="cpu")
    image_to_text = torch.full((num_image, num_text), layout.num_image_distances + 1, dtype=torch.long, device="cpu")
    top = torch.cat([text_index, text_to_image], dim=1)
    bottom = torch.cat([image_to_text, image_index], dim=1)
    return torch.cat([top, bottom], dim=0)


def gather_relative_position_bias(
    table: torch.Tensor, index: torch.Tensor, num_layers: int
) -> tuple[torch.Tensor, ...]:
    """Per-layer (H, N, N) biases: ``table[index]`` → (H·L, N, N) → chunk over layers."""
    bias = F.embedding(index, table)  # (N, N, H*L)
    bias = bias.permute(2, 0, 1)
    return torch.chunk(bias, num_layers, dim=0)


# ----------------------------------------------------------------------------------------- resize


def beit_source_coordinates(src_size: int, dst_size: int) -> list[float]:
    """BEiT's geometric-progression grid for ``src_size`` points spread over ``±dst_size//2``.

    The ratio q is found by the same bisection as BEiT/VLMo (interval [1.01, 1.5], tolerance 1e-6,
    last midpoint kept) so the coordinates agree with the official loader bit for bit.
    """

    def geometric_sum(ratio: float, count: int) -> float:
        return (1.0 - ratio**count) / (1.0 - ratio)

    left, right = 1.01, 1.5
    ratio = (left + right) / 2.0
    while right - left > 1e-6:
        ratio = (left + right) / 2.0
        if geometric_sum(ratio, src_size // 2) > dst_size // 2:
            right = ratio
        else:
            left = ratio
    distances = []
    current = 1.0
    for step in range(src_size // 2):
        distances.append(current)
        current += ratio ** (step + 1)
    return [-d for d in reversed(distances)] + [0.0] + distances


def cubic_spline_matrix(nodes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Matrix M (len(targets) × len(nodes)) with ``M @ values`` = not-a-knot cubic spline at targets.

    Not-a-knot is what FITPACK's interpolating spline (s=0, k=3) uses, i.e. the spline behind
    ``scipy.interpolate.interp2d(kind='cubic')`` / ``RectBivariateSpline`` on a grid; the 2-D
    interpolant is the tensor product of this 1-D operator. Targets outside the node range are clamped
    (FITPACK's bispev clamps too). Computed in float64.
    """
    x = nodes.to(torch.float64)
    n = x.numel()
    if n < 4:
        raise ValueError("cubic spline interpolation needs at least 4 nodes")
    h = x[1:] - x[:-1]
    if torch.any(h <= 0):
        raise ValueError("spline nodes must be strictly increasing")
    # Unknowns: second derivatives m_0..m_{n-1}. Interior rows: continuity of the first derivative,
    #   h_{i-1} m_{i-1} + 2(h_{i-1}+h_i) m_i + h_i m_{i+1} = 6[(y_{i+1}-y_i)/h_i - (y_i-y_{i-1})/h_{i-1}].
    # First/last rows: not-a-knot (third derivative continuous at x_1 and x_{n-2}).
    system = torch.zeros(n, n, dtype=torch.float64)
    rhs = torch.zeros(n, n, dtype=torch.float64)  # maps values y to the right-hand side
    for i in range(1, n - 1):
        system[i, i - 1] = h[i - 1]
        system[i, i] = 2 * (h[i - 1] + h[i])
        system[i, i + 1] = h[i]
        rhs[i, i + 1] += 6 / h[i]
        rhs[i, i] -= 6 / h[i] + 6 / h[i - 1]
        rhs[i, i - 1] += 6 / h[i - 1]
    system[0, 0], system[0, 1], system[0, 2] = h[1], -(h[0] + h[1]), h[0]
    system[-1, -3], system[-1, -2], system[-1, -1] = h[-1], -(h[-2] + h[-1]), h[-2]
    second_derivatives = torch.linalg.solve(system, rhs)  # (n, n): m = S @ y

    t = targets.to(torch.float64).clamp(x[0], x[-1])
    segment = torch.searchsorted(x, t, right=True).sub(1).clamp(0, n - 2)
    x_left, x_right, width = x[segment], x[segment + 1], h[segment]
    a = (x_right - t) / width
    b = (t - x_left) / width
    rows = torch.arange(t.numel())
    matrix = torch.zeros(t.numel(), n, dtype=torch.float64)
    matrix[rows, segment] += a
    matrix[rows, segment + 1] += b
    curvature_left = (a**3 - a) * width**2 / 6
    curvature_right = (b**3 - b) * width**2 / 6
    matrix += curvature_left[:, None] * second_derivatives[segment]
    matrix += curvature_right[:, None] * second_derivatives[segment + 1]
    return matrix


def resize_relative_position_table(table: torch.Tensor, src_grid_size: int, dst_grid_size: int) -> torch.Tensor:
    """Resize the image part of a VLMo/BEiT table from one patch grid to another (official loader rule).

    The first (2W_src−1)² rows are resampled column by column on BEiT's geometric grid with a bicubic
    interpolating spline; all later rows (image CLS rows, cross-modal rows, text rows) are copied verbatim.
    """
    src_size, dst_size = 2 * src_grid_size - 1, 2 * dst_grid_size - 1
    num_patch_rows = src_size * src_size
    if table.shape[0] <= num_patch_rows:
        raise ValueError(f"table with {table.shape[0]} rows cannot hold a {src_size}x{src_size} image block")
    if src_size == dst_size:
        return table.clone()
    patch_part, extra_rows = table[:num_patch_rows], table[num_patch_rows:]
    src_coords = torch.tensor(beit_source_coordinates(src_size, dst_size), dtype=torch.float64)
    half = dst_size // 2
    dst_coords = torch.arange(-half, half + 0.1, 1.0, dtype=torch.float64)
    operator = cubic_spline_matrix(src_coords, dst_coords)  # (dst, src), same along both axes
    grids = patch_part.to(torch.float64).T.reshape(-1, src_size, src_size)  # (columns, dh, dw)
    resized = operator @ grids @ operator.T  # (columns, dst, dst)
    resized = resized.reshape(table.shape[1], dst_size * dst_size).T.to(table.dtype)
    return torch.cat([resized, extra_rows], dim=0)


def grid_size_from_rows(num_rows: int, max_text_len_of_initckpt: int) -> int | None:
    """W such that the VLMo table for (W, L0) has ``num_rows`` rows, or None."""
    patch_rows = num_rows - 2 * max_text_len_of_initckpt - 5
    if patch_rows <= 0:
        return None
    side = math.isqrt(patch_rows)
    if side * side != patch_rows or side % 2 == 0:
        return None
    return (side + 1) // 2
