"""Model sub-commands of the `vlmo` console: `embed`, `retrieve`, `vqa`.

All three read a model directory written by ``VLMo.save_pretrained`` (``config.json``,
``model.safetensors`` and the ``vocab.txt`` used in training; ``vqa`` also reads an optional
``answer_vocab.json``: a JSON list of answers in label order).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ANSWER_VOCAB_NAME = "answer_vocab.json"


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


# ----------------------------------------------------------------------------------------- loading


class LoadedModel:
    """A model directory ready for inference: model (eval mode), tokenizer, eval transform, device."""

    def __init__(self, model_dir: str, device: str = "cpu", vocab_file: str | None = None) -> None:
        import torch

        from vlmo_pipeline.models import VLMo
        from vlmo_pipeline.models.tokenizer import VLMoTokenizer
        from vlmo_pipeline.models.transforms import build_eval_transform

        directory = Path(model_dir)
        if not (directory / "config.json").is_file():
            raise CommandError(f"{directory}: not a model directory (no config.json); expected a save_pretrained output")
        vocab = Path(vocab_file) if vocab_file else directory / "vocab.txt"
        if not vocab.is_file():
            raise CommandError(f"{vocab}: vocabulary not found; pass --vocab FILE or save the model with its vocab.txt")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.directory = directory
        self.device = torch.device(device)
        self.model = VLMo.from_pretrained(directory).to(self.device).eval()
        self.tokenizer = VLMoTokenizer(str(vocab), lowercase=True, max_len=self.model.config.max_text_len)
        if self.tokenizer.vocab_size > self.model.config.vocab_size:
            raise CommandError(
                f"{vocab} has {self.tokenizer.vocab_size} tokens but the model's vocab_size is "
                f"{self.model.config.vocab_size}: wrong vocabulary for this model"
            )
        self.transform = build_eval_transform(self.model.config.image_size)

    def image_tensor(self, paths: list[Path]):
        import torch

        from vlmo_pipeline.models.transforms import decode_image

        tensors = []
        for path in paths:
            try:
                tensors.append(self.transform(decode_image(path.read_bytes())))
            except (OSError, ValueError) as error:
                raise CommandError(f"{path}: cannot read image ({error})") from error
        return torch.stack(tensors).to(self.device)

    def text_tensors(self, texts: list[str]):
        encoded = self.tokenizer.encode(texts)
        return encoded["text_ids"].to(self.device), encoded["text_masks"].to(self.device)

    def embed_images(self, paths: list[Path], batch_size: int):
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                chunks.append(self.model.encode_image(self.image_tensor(paths[start : start + batch_size])).float().cpu())
        return torch.cat(chunks)

    def embed_texts(self, texts: list[str], batch_size: int):
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                ids, masks = self.text_tensors(texts[start : start + batch_size])
                chunks.append(self.model.encode_text(ids, masks).float().cpu())
        return torch.cat(chunks)


def _list_images(folder: str) -> list[Path]:
    directory = Path(folder)
    if not directory.is_dir():
        raise CommandError(f"{directory}: not a directory")
    images = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise CommandError(f"{directory}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def _read_lines(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{file}: file not found")
    lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise CommandError(f"{file}: no non-empty lines")
    return lines


def _write_atomic(target: Path, writer: Callable[[str], Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        writer(temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------- commands


def run_embed(args: argparse.Namespace) -> int:
    """Embed a folder of images and/or a text file of queries with the dual encoder."""
    if not args.images and not args.texts:
        raise CommandError("embed needs --images DIR and/or --texts FILE")
    output = Path(args.output)
    if output.suffix not in (".npy", ".safetensors"):
        raise CommandError(f"{output}: output must end in .npy or .safetensors")
    if output.suffix == ".npy" and args.images and args.texts:
        raise CommandError("a .npy file holds one array: give only --images or --texts, or write .safetensors")
    loaded = LoadedModel(args.model, args.device, args.vocab)
    arrays, names = {}, {}
    if args.images:
        paths = _list_images(args.images)
        arrays["image_embeds"] = loaded.embed_images(paths, args.batch_size)
        names["images"] = [str(p) for p in paths]
    if args.texts:
        texts = _read_lines(args.texts)
        arrays["text_embeds"] = loaded.embed_texts(texts, args.batch_size)
        names["texts"] = texts
    if output.suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {key: json.dumps(value) for key, value in names.items()}
        metadata["model"] = str(loaded.directory)
        _write_atomic(output, lambda path: save_file({k: v.contiguous() for k, v in arrays.items()}, path, metadata))
    else:
        import numpy as np

        (array,) = arrays.values()

        def write_npy(path: str) -> None:
            with open(path, "wb") as handle:
                np.save(handle, array.numpy())

        _write_atomic(output, write_npy)
        sidecar = output.with_suffix(".json")
        _write_atomic(sidecar, lambda path: Path(path).write_text(json.dumps(names, indent=2)))
    shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in arrays.items())
    print(f"wrote {output}: {shapes}")
    return 0


def run_retrieve(args: argparse.Namespace) -> int:
    """Top-k images for a text query (``--images --query``) or top-k texts for an image (``--image --texts``)."""
    text_to_image = bool(args.images and args.query)
    image_to_text = bool(args.image and args.texts)
    if text_to_image == image_to_text:
        raise CommandError("retrieve needs either --images DIR --query TEXT, or --image FILE --texts FILE")
    loaded = LoadedModel(args.model, args.device, args.vocab)
    if text_to_image:
        candidates = _list_images(args.images)
        query = loaded.embed_texts([args.query], 1)
        scores = (loaded.embed_images(candidates, args.batch_size) @ query.T).squeeze(1)
        labels = [str(p) for p in candidates]
    else:
        image = Path(args.image)
        if not image.is_file():
            raise CommandError(f"{image}: file not found")
        labels = _read_lines(args.texts)
        query = loaded.embed_images([image], 1)
        scores = (loaded.embed_texts(labels, args.batch_size) @ query.T).squeeze(1)
    top = scores.topk(min(args.top_k, len(labels)))
    results = [{"rank": r + 1, "score": float(s), "match": labels[i]} for r, (s, i) in enumerate(zip(top.values, top.indices))]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print(f"{row['rank']:>3}  {row['score']:.4f}  {row['match']}")
    return 0


def run_vqa(args: argparse.Namespace) -> int:
    """Answer a question about one image with a VQA fine-tuned model."""
    import torch

    loaded = LoadedModel(args.model, args.device, args.vocab)
    if getattr(loaded.model, "vqa_classifier", None) is None:
        raise CommandError(f"{args.model}: this model has no VQA head (loss_names={list(loaded.model.config.loss_names)})")
    image = Path(args.image)
    if not image.is_file():
        raise CommandError(f"{image}: file not found")
    answers = None
    answer_file = loaded.directory / ANSWER_VOCAB_NAME
    if answer_file.is_file():
        try:
            answers = json.loads(answer_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CommandError(f"{answer_file}: invalid JSON ({error})") from error
        if not isinstance(answers, list) or len(answers) != loaded.model.config.vqa_num_labels:
            raise CommandError(
                f"{answer_file}: expected a JSON list of {loaded.model.config.vqa_num_labels} answers in label order"
            )
    ids, masks = loaded.text_tensors([args.question])
    with torch.inference_mode():
        # Trained with BCE on soft scores: sigmoid gives per-answer scores in [0, 1].
        scores = loaded.model.vqa_logits(ids, masks, loaded.image_tensor([image])).float().sigmoid()[0].cpu()
    top = scores.topk(min(args.top_k, scores.numel()))
    results = [
        {"label": int(i), "answer": answers[int(i)] if answers else None, "score": float(s)}
        for s, i in zip(top.values, top.indices)
    ]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            name = row["answer"] if row["answer"] is not None else f"label {row['label']}"
            print(f"{row['score']:.4f}  {name}")
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CommandError as error:
            print(f"vlmo {args.command}: error: {error}", file=sys.stderr)
            return 2

    run.__doc__ = command.__doc__
    return run


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory written by save_pretrained")
    parser.add_argument("--vocab", default=None, help="vocab.txt (default: the one inside --model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=32, help="images/texts per forward pass")


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `embed`, `retrieve` and `vqa` on the `vlmo` parser (each sets ``func``)."""
    embed = subparsers.add_parser("embed", help="dual-encoder embeddings of images and/or texts")
    _common(embed)
    embed.add_argument("--images", help="folder of images (searched recursively)")
    embed.add_argument("--texts", help="text file, one query per line")
    embed.add_argument("--output", required=True, help="output .npy (one of images/texts) or .safetensors")
    embed.set_defaults(func=_guarded(run_embed), command="embed")

    retrieve = subparsers.add_parser("retrieve", help="top-k images for a text, or top-k texts for an image")
    _common(retrieve)
    retrieve.add_argument("--images", help="folder of candidate images (text → image)")
    retrieve.add_argument("--query", help="text query (text → image)")
    retrieve.add_argument("--image", help="query image (image → text)")
    retrieve.add_argument("--texts", help="text file of candidate texts, one per line (image → text)")
    retrieve.add_argument("--top-k", type=int, default=5)
    retrieve.add_argument("--json", action="store_true", help="print JSON instead of a table")
    retrieve.set_defaults(func=_guarded(run_retrieve), command="retrieve")

    vqa = subparsers.add_parser("vqa", help="answer a question about an image (VQA fine-tuned model)")
    _common(vqa)
    vqa.add_argument("--image", required=True)
    vqa.add_argument("--question", required=True)
    vqa.add_argument("--top-k", type=int, default=5)
    vqa.add_argument("--json", action="store_true", help="print JSON instead of a table")
    vqa.set_defaults(func=_guarded(run_vqa), command="vqa")
