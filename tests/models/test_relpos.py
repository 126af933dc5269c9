"""Relative position index rules (spec §1.5) and the torch-only table resize."""

from __future__ import annotations

import pytest
import torch

from vlmo_pipeline.models import (
    RelPosLayout,
    fused_relative_position_index,
    image_relative_position_index,
    resize_relative_position_table,
    text_relative_position_index,
)
from vlmo_pipeline.models.relpos import beit_source_coordinates, cubic_spline_matrix, gather_relative_position_bias

BASE = RelPosLayout(grid_size=14, max_text_len_of_initckpt=196)


def test_table_sizes():
    assert (BASE.num_image_distances, BASE.num_rows) == (732, 1126)
    assert RelPosLayout(24, 196).num_image_distances == 2212 and RelPosLayout(24, 196).num_rows == 2606
    assert RelPosLayout(30, 196).num_image_distances == 3484 and RelPosLayout(30, 196).num_rows == 3878
    assert BASE.num_extra_rows == 3 + 2 + 392


def test_image_index_values():
    index = image_relative_position_index(14)
    assert index.shape == (197, 197) and index.dtype == torch.long
    assert (index[0, 0], index[0, 1], index[1, 0], index[1, 1]) == (731, 729, 730, 364)
    assert index[0, 1:].eq(729).all() and index[1:, 0].eq(730).all()
    # BEiT rule, query minus key: patch (0,0) vs patch (0,1) -> dh=0, dw=-1 -> 13*27 + 12.
    assert index[1, 2] == 13 * 27 + 12 and index[2, 1] == 13 * 27 + 14
    # patch (1,0) [token 15] query vs patch (0,0) key: dh=+1.
    assert index[15, 1] == 14 * 27 + 13
    assert index[1:, 1:].min() == 0 and index[1:, 1:].max() == 728


def test_text_index_values():
    index = text_relative_position_index(40, BASE)
    assert index.shape == (40, 40)
    assert index[0, 0] == 1125 and index[0, 5] == 1123 and index[5, 0] == 1124
    assert (index[1, 1], index[1, 2], index[2, 1]) == (928, 929, 927)
    # key minus query: query 1, key 39 -> +38.
    assert index[1, 39] == 928 + 38 and index[39, 1] == 928 - 38
    full = text_relative_position_index(196, BASE)
    assert full[1:, 1:].min() == 734 and full[1:, 1:].max() == 1122


def test_fused_index_layout():
    text, image = text_relative_position_index(40, BASE), image_relative_position_index(14)
    fused = fused_relative_position_index(text, image, BASE)
    assert fused.shape == (237, 237)
    assert fused[:40, 40:].eq(732).all() and fused[40:, :40].eq(733).all()
    assert torch.equal(fused[:40, :40], text) and torch.equal(fused[40:, 40:], image)
    assert fused_relative_position_index(text, image_relative_position_index(24), RelPosLayout(24, 196)).shape == (
        617,
        617,
    )


def test_gather_gives_per_layer_columns():
    layers, heads = 3, 2
    table = torch.arange(10 * heads * layers, dtype=torch.float32).reshape(10, heads * layers)
    index = torch.tensor([[0, 9], [4, 2]])
    biases = gather_relative_position_bias(table, index, layers)
    assert len(biases) == layers
    for layer in range(layers):
        for head in range(heads):
            assert torch.equal(biases[layer][head], table[:, layer * heads + head][index])


def test_cubic_spline_reproduces_cubics_and_nodes():
    nodes = torch.tensor(beit_source_coordinates(27, 47), dtype=torch.float64)
    assert nodes.numel() == 27 and nodes[13] == 0 and nodes[14] == 1.0
    targets = torch.arange(-23, 23.1, 1.0, dtype=torch.float64)
    assert targets.numel() == 47
    # Interpolation: identity at the nodes.
    assert torch.allclose(cubic_spline_matrix(nodes, nodes), torch.eye(27, dtype=torch.float64), atol=1e-10)
    # Not-a-knot splines reproduce any cubic polynomial exactly (inside the node range).
    cubic = lambda x: 0.3 * x**3 - 2.0 * x**2 + x - 5.0  # noqa: E731
    inside = targets.clamp(nodes[0], nodes[-1])
    assert torch.allclose(cubic_spline_matrix(nodes, targets) @ cubic(nodes), cubic(inside), rtol=1e-9, atol=1e-7)


def test_resize_224_to_384_keeps_extra_rows_and_interpolates():
    layers_heads = 6
    grid_src, grid_dst = 14, 24
    src_rows = RelPosLayout(grid_src, 196).num_rows
    torch.manual_seed(0)
    table = torch.randn(src_rows, layers_heads, dtype=torch.float64)
    # Fill the image block of column c with a bicubic polynomial p_c(dh, dw) over BEiT's grid.
    coords = torch.tensor(beit_source_coordinates(27, 47), dtype=torch.float64)
    coefficients = torch.randn(layers_heads, 4, 4, dtype=torch.float64)

    def poly(c, y, x):
        powers_y = torch.stack([y**k for k in range(4)], -1)
        powers_x = torch.stack([x**k for k in range(4)], -1)
        return torch.einsum("...i,ij,...j->...", powers_y, coefficients[c], powers_x)

    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    for c in range(layers_heads):
        table[: 27 * 27, c] = poly(c, yy, xx).reshape(-1) / 1000
    resized = resize_relative_position_table(table, grid_src, grid_dst)
    dst_layout = RelPosLayout(grid_dst, 196)
    assert resized.shape == (dst_layout.num_rows, layers_heads) == (2606, layers_heads)
    assert torch.equal(resized[47 * 47 :], table[27 * 27 :])  # CLS, cross-modal and text rows verbatim
    targets = torch.arange(-23, 23.1, 1.0, dtype=torch.float64).clamp(coords[0], coords[-1])
    ty, tx = torch.meshgrid(targets, targets, indexing="ij")
    for c in range(layers_heads):
        expected = poly(c, ty, tx).reshape(-1) / 1000
        assert torch.allclose(resized[: 47 * 47, c], expected, rtol=1e-8, atol=1e-8)
    # The centre (0,0) and (±1, ±1) offsets are grid points of both grids: values carried over exactly.
    src_grid = table[: 27 * 27].reshape(27, 27, -1)
    dst_grid = resized[: 47 * 47].reshape(47, 47, -1)
    for dy, dx in [(0, 0), (1, 1), (-1, 0), (0, -1)]:
        assert torch.allclose(dst_grid[23 + dy, 23 + dx], src_grid[13 + dy, 13 + dx], atol=1e-9)


def test_resize_same_size_is_identity_and_bad_rows_raise():
    table = torch.randn(RelPosLayout(4, 40).num_rows, 8)
    assert torch.equal(resize_relative_position_table(table, 4, 4), table)
    with pytest.raises(ValueError):
        resize_relative_position_table(torch.randn(20, 8), 4, 6)
