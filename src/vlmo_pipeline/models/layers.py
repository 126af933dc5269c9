"""Building blocks of the Multiway (MoME) transformer: attention, MLP expert, MoME block, patch embedding.

Parameter names match the official ``multiway_transformer.py`` so state dicts line up key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODALITIES = ("image", "text", "vl")


class DropPath(nn.Module):
    """Stochastic depth per sample (timm semantics: survivors are scaled by 1/keep_prob)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = x.new_empty(shape).bernoulli_(keep_prob)
        return x * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """FFN expert: fc1 → GELU (erf) → fc2 (dropout is 0 in VLMo and therefore omitted)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def build_attention_mask(
    bias: torch.Tensor | None, key_padding_mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """Additive float mask for SDPA: relative bias (H,N,N) plus −inf on padded keys (B,N)."""
    mask = None if bias is None else bias.unsqueeze(0).to(dtype)
    if key_padding_mask is not None:
        padding = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
        padding = padding.masked_fill(~key_padding_mask.bool(), float("-inf"))[:, None, None, :]
        mask = padding if mask is None else mask + padding
    return mask


class Attention(nn.Module):
    """Multi-head self-attention with BEiT-style q/v bias (no k bias).

    ``use_sdpa=True`` runs ``F.scaled_dot_product_attention`` with the relative position bias and the
    key-padding mask folded into one additive float mask; ``False`` runs the official explicit path
    (fp32 QKᵀ, bias add, ``masked_fill(-inf)``, softmax). Both agree to ~1e-6 in fp32.
    """

    def __init__(self, dim: int, num_heads: int, use_sdpa: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.use_sdpa = use_sdpa
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        relative_position_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv_bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        qkv = qkv.reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = q * self.scale
        if self.use_sdpa:
            mask = build_attention_mask(relative_position_bias, key_padding_mask, q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        else:
            out = self._reference_attention(q, k, v, x, key_padding_mask, relative_position_bias)
        out = out.transpose(1, 2).reshape(batch, length, dim)
        return self.proj(out)

    @staticmethod
    def _reference_attention(q, k, v, x, key_padding_mask, relative_position_bias):
        scores = q.float() @ k.float().transpose(-2, -1)
        if relative_position_bias is not None:
            scores = scores + relative_position_bias.unsqueeze(0)
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask.bool()[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1).type_as(x)
        return weights @ v


class MoMEBlock(nn.Module):
    """Pre-LN block with one shared attention and modality FFN experts (spec §1.2).

    ``mlp_imag``/``norm2_imag`` and ``mlp_text``/``norm2_text`` always exist; ``mlp_vl``/``norm2_vl``
    only when ``with_vlffn``. In ``"vl"`` mode a block without VL-FFN splits the sequence at
    ``text_len`` (text first) and routes each part to its own expert.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden_dim: int,
        drop_path: float = 0.0,
        layer_scale_init_values: float | None = 0.1,
        with_vlffn: bool = False,
        norm_eps: float = 1e-6,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, use_sdpa=use_sdpa)
        self.drop_path = DropPath(drop_path)
        self.norm2_text = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2_imag = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp_text = Mlp(dim, mlp_hidden_dim)
        self.mlp_imag = Mlp(dim, mlp_hidden_dim)
        self.mlp_vl = Mlp(dim, mlp_hidden_dim) if with_vlffn else None
        self.norm2_vl = nn.LayerNorm(dim, eps=norm_eps) if with_vlffn else None
        if layer_scale_init_values is not None:
            self.gamma_1 = nn.Parameter(layer_scale_init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layer_scale_init_values * torch.ones(dim))
        else:
            self.gamma_1, self.gamma_2 = None, None

    @property
    def has_vlffn(self) -> bool:
        return self.mlp_vl is not None

    def _scaled(self, gamma: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        return x if gamma is None else gamma * x

    def _expert(self, x: torch.Tensor, norm: nn.Module, mlp: nn.Module) -> torch.Tensor:
        return x + self.drop_path(self._scaled(self.gamma_2, mlp(norm(x))))

    def forward(
        self,
        x: torch.Tensor,
        modality: str,
        key_padding_mask: torch.Tensor | None = None,
        relative_position_bias: torch.Tensor | None = None,
        text_len: int | None = None,
    ) -> torch.Tensor:
        attn_out = self.attn(self.norm1(x), key_padding_mask, relative_position_bias)
        x = x + self.drop_path(self._scaled(self.gamma_1, attn_out))
        if modality == "image":
            return self._expert(x, self.norm2_imag, self.mlp_imag)
        if modality == "text":
            return self._expert(x, self.norm2_text, self.mlp_text)
        if modality != "vl":
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if self.mlp_vl is not None:
            return self._expert(x, self.norm2_vl, self.mlp_vl)
        if text_len is None:
            raise ValueError("fused ('vl') mode in a block without VL-FFN needs text_len to split the sequence")
        # Separate drop_path calls on the two halves, as in the official code.
        text_part = self._expert(x[:, :text_len], self.norm2_text, self.mlp_text)
        image_part = self._expert(x[:, text_len:], self.norm2_imag, self.mlp_imag)
        return torch.cat([text_part, image_part], dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; the input size is fixed at build time (as officially)."""

    def __init__(self, image_size: int, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected images of shape (B, C, {self.image_size}, {self.image_size}), got {tuple(images.shape)}"
            )
        return self.proj(images).flatten(2).transpose(1, 2)
