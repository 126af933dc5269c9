"""Text embeddings and task heads with the official parameter names (spec §1.4, §1.6)."""

from __future__ import annotations

import math

import torch
from torch import nn

#: Initial value of the ITC temperatures: ln(1/0.07).
LOGIT_SCALE_INIT = math.log(1 / 0.07)


def init_bert_style(module: nn.Module, linear_std: float = 0.02) -> None:
    """Official ``objectives.init_weights``: Linear/Embedding N(0, .02), biases 0, LayerNorm 1/0.

    ``linear_std`` replaces 0.02 for Linear weights only (``VLMoConfig.linear_init_std``). Like the official
    code this also overwrites the zero padding row of the word embedding.
    """
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(mean=0.0, std=linear_std)
    elif isinstance(module, nn.Embedding):
        module.weight.data.normal_(mean=0.0, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


class TextEmbeddings(nn.Module):
    """Same parameters as transformers' ``BertEmbeddings`` (4.8.1), including the ``position_ids`` buffer.

    Output = dropout(LayerNorm(word[ids] + token_type[0] (+ position[pos] if ``use_absolute_positions``))).
    With relative position bias (Base/Large) the position table exists but is unused, as officially.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        max_positions: int,
        use_absolute_positions: bool,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.0,
        pad_token_id: int = 0,
        type_vocab_size: int = 2,
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim, padding_idx=pad_token_id)
        self.position_embeddings = nn.Embedding(max_positions, dim)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.use_absolute_positions = use_absolute_positions
        # Persistent int64 buffer: the official (transformers 4.8.1) state dict contains it.
        self.register_buffer("position_ids", torch.arange(max_positions).unsqueeze(0), persistent=True)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.position_ids.shape[1]:
            raise ValueError(f"text length {length} exceeds max_text_len={self.position_ids.shape[1]}")
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        if self.use_absolute_positions:
            embeddings = embeddings + self.position_embeddings(self.position_ids[:, :length])
        return self.dropout(self.LayerNorm(embeddings))


class Pooler(nn.Module):
    """tanh(dense(x[:, 0]))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class ITMHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ITCHead(nn.Module):
    """Linear projection without bias (no nonlinearity); the caller L2-normalises."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class PredictionHeadTransform(nn.Module):
    """BertPredictionHeadTransform: dense → GELU (erf) → LayerNorm(eps 1e-12)."""

    def __init__(self, dim: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.transform_act_fn = nn.GELU()
        self.LayerNorm = nn.LayerNorm(dim, eps=layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class MLMHead(nn.Module):
    """Untied MLM decoder: transform → decoder (no bias) + separate ``bias`` vector."""

    def __init__(self, dim: int, vocab_size: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.transform = PredictionHeadTransform(dim, layer_norm_eps)
        self.decoder = nn.Linear(dim, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x)) + self.bias


def classifier(in_dim: int, hidden_dim: int, num_outputs: int) -> nn.Sequential:
    """VQA/NLVR2 classifier: Linear → LayerNorm(eps 1e-5) → GELU → Linear (keys .0/.1/.3)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.GELU(),
        nn.Linear(hidden_dim, num_outputs),
    )
