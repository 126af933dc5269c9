"""Model sub-commands of the `vlmo` console: `embed`, `retrieve`, `vqa`.

All three read a model directory written by ``VLMo.save_pretrained`` (``config.json``,
``model.safetensors`` and the ``vocab.txt`` used in training; ``vqa`` also reads an optional
``answer_vocab.json``: a JSON list of answers in label order).

Errors a user can cause (a wrong path, a corrupt ``config.json`` or weights file, a file that is not an image, a bad
vocabulary, ...) are raised as :class:`CommandError` with a message that starts with the offending path, and
:func:`guarded` prints them as ONE line on stderr (``vlmo <command>: error: <path>: <what is wrong>``) with exit
status 1; wrong or missing options are :class:`UsageError` (exit status 2, like argparse's own errors). Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from vlmo_pipeline.files import atomic_write_json, atomic_write_via

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Same names as vlmo_pipeline.models.vlmo (not imported here: that would import torch for `vlmo --help`).


class CommandError(Exception):
    """A user-facing runtime error (missing or corrupt file, ...): one line on stderr, exit status 1."""

    exit_code = 1


class UsageError(CommandError):
    """Options that do not fit together or a bad option value: one line on stderr, exit status 2 (as argparse)."""

    exit_code = 2


def one_line(message: str) -> str:
    """``message`` with its lines joined by ``"; "`` (multi-line library messages stay one stderr line)."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def _reason(error: BaseException) -> str:
    """The useful part of an exception's message (``strerror`` for OS errors, without the repeated path)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _about(path: Path, error: BaseException, what: str) -> str:
    """``"<path>: <what> (<reason>)"``, or the library's own message when it already starts with the path.

    An OS error about another file (a parent folder, say) names that file in the reason."""
    reason = _reason(error)
    other = getattr(error, "filename", None)
    if isinstance(error, OSError) and other is not None and str(other) != str(path) and error.strerror:
        reason = f"{other}: {error.strerror}"
    if reason.startswith(str(path)):
        return reason
    return f"{path}: {what} ({reason})"


def print_error(command: str | None, message: str) -> None:
    """Print ``vlmo <command>: error: <message>`` as one line on stderr."""
    prefix = f"vlmo {command}" if command else "vlmo"
    print(f"{prefix}: error: {one_line(message)}", file=sys.stderr)


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a sub-command: :class:`CommandError` -> one stderr line + its exit code; OS errors -> one line, 1."""

    def run(args: argparse.Namespace) -> int:
        name = getattr(args, "command", None)
        try:
            return int(command(args) or 0)
        except CommandError as error:
            print_error(name, str(error))
            return error.exit_code
        except OSError as error:  # safety net: a file problem not anticipated at its call site (still names it)
            where = f"{error.filename}: " if error.filename else ""
            print_error(name, f"{where}{_reason(error)}")
            return 1

    run.__doc__ = command.__doc__
    run.__wrapped__ = command  # type: ignore[attr-defined]
    return run


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# ----------------------------------------------------------------------------------------- files


def _existing_file(value: str, what: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise CommandError(f"{path}: no such {what}")
    if not path.is_file():
        raise CommandError(f"{path}: not a file ({what} expected)")
    return path


def _list_images(folder: str) -> list[Path]:
    directory = Path(folder)
    if not directory.exists():
        raise CommandError(f"{directory}: no such image folder")
    if not directory.is_dir():
        raise CommandError(f"{directory}: not a directory (a folder of images expected)")
    try:
        images = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as error:
        raise CommandError(_about(Path(error.filename or directory), error, "cannot list")) from error
    if not images:
        raise CommandError(f"{directory}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CommandError(f"{file}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise CommandError(_about(file, error, "cannot read")) from error


def _read_lines(path: str) -> list[str]:
    file = _existing_file(path, "text file")
    lines = [line.strip() for line in _read_text(file).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise CommandError(f"{file}: no non-empty lines")
    return lines


def _read_model_config(directory: Path):
    """Check that ``directory`` holds a readable save_pretrained output; returns its ``VLMoConfig``."""
    from vlmo_pipeline.models.config import VLMoConfig
    from vlmo_pipeline.models.pretrained import CONFIG_NAME, MODEL_FILES, missing_model_files

    expected = " + ".join(MODEL_FILES)
    if not directory.exists():
        raise CommandError(f"{directory}: no such model directory (expected {expected})")
    if not directory.is_dir():
        raise CommandError(f"{directory}: not a directory (expected a model directory with {expected})")
    if missing := missing_model_files(directory):
        raise CommandError(
            f"{directory}: not a model directory: no {' and no '.join(missing)} (expected {expected} "
            "written by save_pretrained)"
        )
    try:
        return VLMoConfig.from_file(directory / CONFIG_NAME)
    except OSError as error:
        raise CommandError(_about(directory / CONFIG_NAME, error, "cannot read")) from error
    except ValueError as error:  # ConfigError: names the file, the field and what is wrong
        raise CommandError(str(error)) from error


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device {name}: not a device (use cpu, cuda, cuda:N or auto)") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CommandError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CommandError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _write_output(target: Path, writer: Callable[[Path], object]) -> None:
    """Atomic write (vlmo_pipeline.files) with OS errors reported against ``target``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_via(target, writer)
    except OSError as error:
        raise CommandError(_about(target, error, "cannot write")) from error


# ----------------------------------------------------------------------------------------- loading

_BYTES_IO_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


class LoadedModel:
    """A model directory ready for inference: model (eval mode), tokenizer, eval transform, device.

    Every foreseeable problem with the directory, the vocabulary or the device raises :class:`CommandError` naming
    the file (``config.json`` unreadable / not JSON / not a config, weights not a safetensors file or not this
    model's, vocab missing / malformed / too large for the model)."""

    def __init__(self, model_dir: str, device: str = "cpu", vocab_file: str | None = None) -> None:
        from safetensors import SafetensorError

        from vlmo_pipeline.models import VLMo
        from vlmo_pipeline.models.checkpoint import CheckpointMismatchError
        from vlmo_pipeline.models.pretrained import VOCAB_NAME, WEIGHTS_NAME
        from vlmo_pipeline.models.tokenizer import VLMoTokenizer
        from vlmo_pipeline.models.transforms import build_eval_transform

        directory = Path(model_dir)
        config = _read_model_config(directory)
        vocab = _existing_file(vocab_file, "vocabulary file") if vocab_file else directory / VOCAB_NAME
        if not vocab_file and not vocab.is_file():
            raise CommandError(f"{vocab}: vocabulary not found; pass --vocab FILE or save the model with its vocab.txt")
        try:
            tokenizer = VLMoTokenizer(str(vocab), lowercase=True, max_len=config.max_text_len)
        except UnicodeDecodeError as error:
            raise CommandError(f"{vocab}: not a UTF-8 vocabulary ({error.reason} at byte {error.start})") from error
        except (OSError, ValueError) as error:
            raise CommandError(_about(vocab, error, "invalid vocabulary")) from error
        if tokenizer.vocab_size > config.vocab_size:
            raise CommandError(
                f"{vocab}: {tokenizer.vocab_size} tokens but the model's vocab_size is {config.vocab_size}: "
                "wrong vocabulary for this model"
            )
        self.directory = directory
        self.device = _resolve_device(device)
        weights = directory / WEIGHTS_NAME
        try:
            model = VLMo.from_pretrained(directory)
        except (SafetensorError, CheckpointMismatchError) as error:
            raise CommandError(f"{weights}: cannot load the weights ({error})") from error
        except (OSError, ValueError) as error:
            raise CommandError(_about(weights, error, "cannot load the weights")) from error
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.transform = build_eval_transform(self.model.config.image_size)

    def load_image(self, path: Path):
        """The eval-transformed tensor of one image file; unreadable or undecodable files raise CommandError."""
        from vlmo_pipeline.models.transforms import decode_image

        try:
            data = path.read_bytes()
        except OSError as error:
            raise CommandError(_about(path, error, "cannot read image")) from error
        try:
            image = decode_image(data)
        except ValueError as error:
            cause = error.__cause__
            detail = f"{type(cause).__name__}: {_BYTES_IO_REPR.sub('', str(cause))}" if cause else str(error)
            raise CommandError(f"{path}: not a readable image ({detail.strip()})") from error
        return self.transform(image)

    def image_tensor(self, paths: list[Path]):
        import torch

        return torch.stack([self.load_image(path) for path in paths]).to(self.device)

    def text_tensors(self, texts: list[str]):
        encoded = self.tokenizer.encode(texts)
        return encoded["text_ids"].to(self.device), encoded["text_masks"].to(self.device)

    def embed_images(self, paths: list[Path], batch_size: int):
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                chunks.append(
                    self.model.encode_image(self.image_tensor(paths[start : start + batch_size])).float().cpu()
                )
        return torch.cat(chunks)

    def embed_texts(self, texts: list[str], batch_size: int):
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                ids, masks = self.text_tensors(texts[start : start + batch_size])
                chunks.append(self.model.encode_text(ids, masks).float().cpu())
        return torch.cat(chunks)


# ----------------------------------------------------------------------------------------- commands


def run_embed(args: argparse.Namespace) -> int:
    """Embed a folder of images and/or a text file of queries with the dual encoder."""
    if not args.images and not args.texts:
        raise UsageError("embed needs --images DIR and/or --texts FILE")
    output = Path(args.output)
    if output.suffix not in (".npy", ".safetensors"):
        raise UsageError(f"{output}: output must end in .npy or .safetensors")
    if output.suffix == ".npy" and args.images and args.texts:
        raise UsageError("a .npy file holds one array: give only --images or --texts, or write .safetensors")
    if output.is_dir():
        raise CommandError(f"{output}: is a directory (the output must be a file)")
    paths = _list_images(args.images) if args.images else None  # inputs first: fail before loading the model
    texts = _read_lines(args.texts) if args.texts else None
    loaded = LoadedModel(args.model, args.device, args.vocab)
    arrays, names = {}, {}
    if paths is not None:
        arrays["image_embeds"] = loaded.embed_images(paths, args.batch_size)
        names["images"] = [str(p) for p in paths]
    if texts is not None:
        arrays["text_embeds"] = loaded.embed_texts(texts, args.batch_size)
        names["texts"] = texts
    if output.suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {key: json.dumps(value) for key, value in names.items()}
        metadata["model"] = str(loaded.directory)
        tensors = {k: v.contiguous() for k, v in arrays.items()}
        _write_output(output, lambda path: save_file(tensors, str(path), metadata))
    else:
        import numpy as np

        (array,) = arrays.values()

        def write_npy(path: Path) -> None:
            with open(path, "wb") as handle:  # a file object: np.save would append ".npy" to the temp name
                np.save(handle, array.numpy())

        _write_output(output, write_npy)
        sidecar = output.with_suffix(".json")
        try:
            atomic_write_json(sidecar, names, indent=2)
        except OSError as error:
            raise CommandError(_about(sidecar, error, "cannot write")) from error
    shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in arrays.items())
    print(f"wrote {output}: {shapes}")
    return 0


def run_retrieve(args: argparse.Namespace) -> int:
    """Top-k images for a text query (``--images --query``) or top-k texts for an image (``--image --texts``)."""
    text_to_image = bool(args.images and args.query)
    image_to_text = bool(args.image and args.texts)
    if text_to_image == image_to_text:
        raise UsageError("retrieve needs either --images DIR --query TEXT, or --image FILE --texts FILE")
    if text_to_image:
        candidates = _list_images(args.images)
        labels = [str(p) for p in candidates]
    else:
        image = _existing_file(args.image, "image file")
        labels = _read_lines(args.texts)
    loaded = LoadedModel(args.model, args.device, args.vocab)
    if text_to_image:
        query = loaded.embed_texts([args.query], 1)
        scores = (loaded.embed_images(candidates, args.batch_size) @ query.T).squeeze(1)
    else:
        query = loaded.embed_images([image], 1)
        scores = (loaded.embed_texts(labels, args.batch_size) @ query.T).squeeze(1)
    top = scores.topk(min(args.top_k, len(labels)))
    results = [
        {"rank": r + 1, "score": float(s), "match": labels[i]} for r, (s, i) in enumerate(zip(top.values, top.indices))
    ]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print(f"{row['rank']:>3}  {row['score']:.4f}  {row['match']}")
    return 0


def _read_answer_vocab(directory: Path, num_labels: int) -> list[str] | None:
    """The answers of ``answer_vocab.json`` in label order, or None when the model directory has none."""
    from vlmo_pipeline.models.pretrained import ANSWER_VOCAB_NAME, read_answer_vocab

    try:
        return read_answer_vocab(directory, num_labels)
    except OSError as error:
        raise CommandError(_about(directory / ANSWER_VOCAB_NAME, error, "cannot read")) from error
    except ValueError as error:
        raise CommandError(str(error)) from error


def run_vqa(args: argparse.Namespace) -> int:
    """Answer a question about one image with a VQA fine-tuned model: the top-k answers with their probabilities."""
    import torch

    image = _existing_file(args.image, "image file")
    loaded = LoadedModel(args.model, args.device, args.vocab)
    if getattr(loaded.model, "vqa_classifier", None) is None:
        raise CommandError(
            f"{args.model}: this model has no VQA head (loss_names={list(loaded.model.config.loss_names)})"
        )
    num_labels = loaded.model.config.vqa_num_labels
    answers = _read_answer_vocab(loaded.directory, num_labels)
    pixels = loaded.image_tensor([image])
    ids, masks = loaded.text_tensors([args.question])
    with torch.inference_mode():
        # Trained with BCE on soft scores: the sigmoid of each logit is that answer's probability (independent
        # per answer, so they need not sum to 1).
        scores = loaded.model.vqa_logits(ids, masks, pixels).float().sigmoid()[0].cpu()
    top = scores.topk(min(args.top_k, scores.numel()))
    results = [
        {"rank": rank + 1, "label": int(i), "answer": answers[int(i)] if answers else None, "score": float(s)}
        for rank, (s, i) in enumerate(zip(top.values, top.indices))
    ]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"top {len(results)} of {num_labels} answers (probability = sigmoid of the VQA logit):")
        for row in results:
            name = row["answer"] if row["answer"] is not None else f"label {row['label']}"
            print(f"{row['rank']:>3}  {row['score']:.4f}  {name}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory written by save_pretrained")
    parser.add_argument("--vocab", default=None, help="vocab.txt (default: the one inside --model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images/texts per forward pass")


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `embed`, `retrieve` and `vqa` on the `vlmo` parser (each sets ``func``)."""
    embed = subparsers.add_parser("embed", help="dual-encoder embeddings of images and/or texts")
    _common(embed)
    embed.add_argument("--images", help="folder of images (searched recursively)")
    embed.add_argument("--texts", help="text file, one query per line")
    embed.add_argument("--output", required=True, help="output .npy (one of images/texts) or .safetensors")
    embed.set_defaults(func=guarded(run_embed), command="embed")

    retrieve = subparsers.add_parser("retrieve", help="top-k images for a text, or top-k texts for an image")
    _common(retrieve)
    retrieve.add_argument("--images", help="folder of candidate images (text → image)")
    retrieve.add_argument("--query", help="text query (text → image)")
    retrieve.add_argument("--image", help="query image (image → text)")
    retrieve.add_argument("--texts", help="text file of candidate texts, one per line (image → text)")
    retrieve.add_argument("--top-k", type=positive_int, default=5)
    retrieve.add_argument("--json", action="store_true", help="print JSON instead of a table")
    retrieve.set_defaults(func=guarded(run_retrieve), command="retrieve")

    vqa = subparsers.add_parser("vqa", help="answer a question about an image (VQA fine-tuned model)")
    _common(vqa)
    vqa.add_argument("--image", required=True)
    vqa.add_argument("--question", required=True)
    vqa.add_argument("--top-k", type=positive_int, default=5, help="how many answers to show (default: 5)")
    vqa.add_argument("--json", action="store_true", help="print JSON (rank, label, answer, score) instead of a table")
    vqa.set_defaults(func=guarded(run_vqa), command="vqa")
