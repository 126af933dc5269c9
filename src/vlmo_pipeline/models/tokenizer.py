"""BERT-uncased WordPiece tokenizer built offline from a ``vocab.txt`` (spec §7).

The official VLMo code calls ``BertTokenizer.from_pretrained("bert-base-uncased")``, which downloads the vocab
from the hub. Here the same rules are assembled from the HF ``tokenizers`` building blocks and a vocab file given
as a path, so nothing touches the network:

* ``BertNormalizer``: clean control characters, split CJK characters, lowercase and strip accents;
* ``BertPreTokenizer``: split on whitespace and punctuation (each punctuation mark is its own word);
* ``WordPiece`` with ``##`` continuation pieces and ``[UNK]`` for words it cannot cover;
* the single-segment template ``[CLS] tokens [SEP]``, truncated and padded to a fixed length (40 by default).

``encode`` also returns ``word_ids`` (index of the pre-tokenized word each token came from, -1 for special and
padding tokens), which the whole-word-masking collator uses to keep WordPiece groups together.

``train_wordpiece_vocab`` trains a BERT-style vocab on a text corpus (the demo world trains its own small one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from ..files import atomic_write_text

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
#: Special tokens in the order a trained vocab lists them first.
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)


def _bert_normalizer(lowercase: bool) -> normalizers.Normalizer:
    # strip_accents=None means "follow lowercase", exactly like BERT-uncased (do_lower_case=True strips accents).
    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )


def _read_vocab(vocab_file: Path) -> dict[str, int]:
    """Read a one-token-per-line vocab; the line number is the id. Errors name the file and line."""
    if not vocab_file.is_file():
        raise FileNotFoundError(f"WordPiece vocab file not found: {vocab_file}")
    vocab: dict[str, int] = {}
    with vocab_file.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            token = line.rstrip("\n").rstrip("\r")
            if not token:
                raise ValueError(
                    f"{vocab_file}:{line_number}: empty line in WordPiece vocab (every line must be a token)"
                )
            if token in vocab:
                raise ValueError(f"{vocab_file}:{line_number}: duplicate token {token!r} in WordPiece vocab")
            vocab[token] = line_number - 1
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise ValueError(f"{vocab_file}: WordPiece vocab lacks the special token(s) {missing}")
    return vocab


class VLMoTokenizer:
    """BERT-uncased WordPiece tokenizer from a vocab file, producing fixed-length torch tensors.

    Args:
        vocab_file: path to a ``vocab.txt`` (one token per line, id = line number); must contain
            ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
        lowercase: lowercase and strip accents (BERT-uncased). Keep True for the official checkpoints.
        max_len: default sequence length including ``[CLS]``/``[SEP]`` (40 in VLMo, 196 for stage-2 text).

    The object is picklable (DataLoader workers get their own copy).
    """

    def __init__(self, vocab_file: str | os.PathLike, lowercase: bool = True, max_len: int = 40) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must be at least 2 (room for [CLS] and [SEP]), got {max_len}")
        self.vocab_file = Path(vocab_file)
        self.lowercase = lowercase
        self.max_len = max_len
        vocab = _read_vocab(self.vocab_file)
        self._token_to_id = vocab
        tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=100))
        tokenizer.normalizer = _bert_normalizer(lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        # Registering them as special makes decode() drop them and keeps "[MASK]" in raw text a single token.
        tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{CLS_TOKEN} $A {SEP_TOKEN}",
            special_tokens=[(CLS_TOKEN, vocab[CLS_TOKEN]), (SEP_TOKEN, vocab[SEP_TOKEN])],
        )
        # An unpadded, untruncated copy serves tokenize(); the main one carries padding/truncation state.
        self._plain_tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer = tokenizer
        self._configured_len: int | None = None

    # ------------------------------------------------------------------ ids
    @property
    def vocab_size(self) -> int:
        """Number of ids (the MLM head size; 30522 for BERT-uncased)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return self._token_to_id[PAD_TOKEN]

    @property
    def unk_id(self) -> int:
        return self._token_to_id[UNK_TOKEN]

    @property
    def cls_id(self) -> int:
        return self._token_to_id[CLS_TOKEN]

    @property
    def sep_id(self) -> int:
        return self._token_to_id[SEP_TOKEN]

    @property
    def mask_id(self) -> int:
        return self._token_to_id[MASK_TOKEN]

    def token_to_id(self, token: str) -> int | None:
        """Id of ``token`` or None when it is not in the vocab."""
        return self._token_to_id.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(int(token_id))

    def continuation_table(self) -> torch.Tensor:
        """Bool tensor (vocab_size,): True where the token is a ``##`` continuation piece.

        Lets the whole-word-masking collator rebuild WordPiece groups from ids alone, the way the official
        collator does from token strings.
        """
        table = torch.zeros(self.vocab_size, dtype=torch.bool)
        for token, token_id in self._token_to_id.items():
            if token.startswith("##"):
                table[token_id] = True
        return table

    # ------------------------------------------------------------- encoding
    def _configure_length(self, length: int) -> None:
        # The Rust tokenizer keeps padding/truncation as state; only touch it when the length changes.
        if self._configured_len == length:
            return
        self._tokenizer.enable_truncation(max_length=length)
        self._tokenizer.enable_padding(length=length, pad_id=self.pad_id, pad_token=PAD_TOKEN)
        self._configured_len = length

    def encode(self, texts: list[str], max_len: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenize a batch to ``[CLS] … [SEP]`` padded/truncated to ``max_len`` (default ``self.max_len``).

        Returns torch.long tensors of shape (B, L): ``text_ids``, ``text_masks`` (1 on real tokens incl.
        [CLS]/[SEP]), ``special_tokens_mask`` (1 on [CLS]/[SEP]/[PAD]) and ``word_ids`` (index of the word a
        token belongs to, -1 on special and padding tokens).
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings; wrap a single text in a list")
        length = self.max_len if max_len is None else int(max_len)
        if length < 2:
            raise ValueError(f"max_len must be at least 2, got {length}")
        self._configure_length(length)
        encodings = self._tokenizer.encode_batch(list(texts))
        batch = len(encodings)
        ids = torch.tensor([enc.ids for enc in encodings], dtype=torch.long).reshape(batch, length)
        masks = torch.tensor([enc.attention_mask for enc in encodings], dtype=torch.long).reshape(batch, length)
        specials = torch.tensor([enc.special_tokens_mask for enc in encodings], dtype=torch.long).reshape(batch, length)
        word_ids = torch.tensor(
            [[-1 if word is None else word for word in enc.word_ids] for enc in encodings], dtype=torch.long
        ).reshape(batch, length)
        return {"text_ids": ids, "text_masks": masks, "special_tokens_mask": specials, "word_ids": word_ids}

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` without special tokens, padding or truncation (for inspection)."""
        return self._plain_tokenizer.encode(text, add_special_tokens=False).tokens

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of a sequence of ids (list or 1-D tensor); special tokens dropped by default."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return (
            f"VLMoTokenizer(vocab_file={str(self.vocab_file)!r}, vocab_size={self.vocab_size}, max_len={self.max_len})"
        )


def train_wordpiece_vocab(
    lines: Iterable[str],
    out_file: str | os.PathLike,
    vocab_size: int = 1000,
    min_frequency: int = 1,
    lowercase: bool = True,
) -> Path:
    """Train a BERT-style WordPiece vocab on ``lines`` and write it as ``vocab.txt`` (atomically).

    The vocab starts with ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4), then the trained alphabet and pieces
    (``##`` continuation prefix). Uses the same normalizer and pre-tokenizer as :class:`VLMoTokenizer`, so the
    vocab covers exactly what that tokenizer produces. Returns the path written.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    out_path = Path(out_file)
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    tokenizer.normalizer = _bert_normalizer(lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens_by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [token_id for _, token_id in tokens_by_id] != list(range(len(tokens_by_id))):
        raise RuntimeError("trained vocab ids are not contiguous; cannot write it as a line-numbered vocab.txt")
    if [token for token, _ in tokens_by_id[: len(SPECIAL_TOKENS)]] != list(SPECIAL_TOKENS):
        raise RuntimeError(f"trained vocab does not start with {SPECIAL_TOKENS}: {tokens_by_id[:5]}")
    if len(tokens_by_id) <= len(SPECIAL_TOKENS):
        raise ValueError("training corpus is empty: the trained vocab holds only the special tokens")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Temp file + fsync + os.replace, final mode 0o666 & ~umask like a plain open() (vlmo_pipeline.files).
    atomic_write_text(out_path, "".join(token + "\n" for token, _ in tokens_by_id))
    return out_path
