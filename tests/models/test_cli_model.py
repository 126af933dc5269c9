"""`vlmo embed / retrieve / vqa` on a tiny saved model (random weights, real files)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from vlmo_pipeline import cli_model
from vlmo_pipeline.models import VLMo, create_model

PIL = pytest.importorskip("PIL.Image")
WORDS = ["a", "red", "blue", "green", "circle", "square", "left", "right", "of", "the", "is", "what", "color", "?"]


def parse(argv):
    parser = argparse.ArgumentParser(prog="vlmo")
    commands = parser.add_subparsers(dest="command", required=True)
    cli_model.add_subcommands(commands)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    model = create_model("vlmo_tiny", vocab_size=len(WORDS) + 5, loss_names=("irtr", "vqa"), vqa_num_labels=3)
    model.save_pretrained(root / "model", vocab_file=vocab)
    (root / "model" / "answer_vocab.json").write_text(json.dumps(["red", "blue", "green"]))
    images = root / "images"
    images.mkdir()
    for name, color in [("red.png", (220, 20, 20)), ("blue.png", (20, 20, 220)), ("green.jpg", (20, 200, 20))]:
        PIL.new("RGB", (80, 60), color).save(images / name)
    (root / "queries.txt").write_text("a red circle\n\nthe blue square\n")
    return root, model


def test_retrieve_text_to_images(workspace, capsys):
    root, model = workspace
    args = parse(["retrieve", "--model", str(root / "model"), "--images", str(root / "images"), "--query", "a red circle", "--top-k", "2", "--json"])
    assert args.func(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in results] == [1, 2]
    assert results[0]["score"] >= results[1]["score"]
    # Scores are the dual-encoder cosine similarities of the saved model.
    loaded = cli_model.LoadedModel(str(root / "model"))
    paths = sorted((root / "images").iterdir())
    expected = (loaded.embed_images(paths, 8) @ loaded.embed_texts(["a red circle"], 1).T).squeeze(1)
    assert results[0]["score"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert results[0]["match"] == str(paths[int(expected.argmax())])


def test_retrieve_image_to_texts(workspace, capsys):
    root, _ = workspace
    args = parse(["retrieve", "--model", str(root / "model"), "--image", str(root / "images" / "red.png"), "--texts", str(root / "queries.txt")])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and {line.split(None, 2)[2] for line in lines} == {"a red circle", "the blue square"}


def test_embed_npy_and_safetensors(workspace, tmp_path, capsys):
    root, _ = workspace
    out = tmp_path / "images.npy"
    args = parse(["embed", "--model", str(root / "model"), "--images", str(root / "images"), "--output", str(out)])
    assert args.func(args) == 0
    array = np.load(out)
    assert array.shape == (3, 128) and np.allclose(np.linalg.norm(array, axis=1), 1, atol=1e-5)
    assert len(json.loads(out.with_suffix(".json").read_text())["images"]) == 3
    from safetensors import safe_open

    out = tmp_path / "both.safetensors"
    args = parse(["embed", "--model", str(root / "model"), "--images", str(root / "images"), "--texts", str(root / "queries.txt"), "--output", str(out)])
    assert args.func(args) == 0
    with safe_open(str(out), "pt") as handle:
        assert handle.get_tensor("image_embeds").shape == (3, 128)
        assert handle.get_tensor("text_embeds").shape == (2, 128)
        assert json.loads(handle.metadata()["texts"]) == ["a red circle", "the blue square"]


def test_vqa_prints_named_answers(workspace, capsys):
    root, model = workspace
    args = parse(["vqa", "--model", str(root / "model"), "--image", str(root / "images" / "blue.png"), "--question", "what color is the square ?", "--json"])
    assert args.func(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert sorted(r["answer"] for r in results) == ["blue", "green", "red"]
    assert all(0 <= r["score"] <= 1 for r in results)


def test_errors_are_reported_not_raised(workspace, tmp_path, capsys):
    root, _ = workspace
    args = parse(["retrieve", "--model", str(tmp_path), "--images", str(root / "images"), "--query", "x"])
    assert args.func(args) == 2
    assert "not a model directory" in capsys.readouterr().err
    args = parse(["retrieve", "--model", str(root / "model"), "--query", "x"])
    assert args.func(args) == 2
    assert "either --images DIR --query TEXT" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    args = parse(["embed", "--model", str(root / "model"), "--images", str(empty), "--output", str(tmp_path / "x.npy")])
    assert args.func(args) == 2
    assert "no image files" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not a png")
    args = parse(["embed", "--model", str(root / "model"), "--images", str(broken), "--output", str(tmp_path / "x.npy")])
    assert args.func(args) == 2
    assert "bad.png: cannot read image" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_vqa_without_head_is_an_error(tmp_path, workspace, capsys):
    root, _ = workspace
    create_model("vlmo_tiny", vocab_size=len(WORDS) + 5, loss_names=("irtr",)).save_pretrained(tmp_path, vocab_file=root / "vocab.txt")
    args = parse(["vqa", "--model", str(tmp_path), "--image", str(root / "images" / "red.png"), "--question", "what color ?"])
    assert args.func(args) == 2
    assert "no VQA head" in capsys.readouterr().err


def test_create_model_and_transforms(workspace):
    root, _ = workspace
    model, train_transform, eval_transform, tokenizer = cli_model_factory(root / "model")
    assert isinstance(model, VLMo) and not model.training and tokenizer.max_len == 40
    image = PIL.new("RGB", (80, 60), (1, 2, 3))
    assert eval_transform(image).shape == train_transform(image).shape == (3, 64, 64)
    fresh, *_, fresh_tokenizer = cli_model_factory("vlmo_tiny", vocab_file=root / "vocab.txt")
    assert fresh.config.vocab_size == fresh_tokenizer.vocab_size == len(WORDS) + 5
    assert cli_model_factory("vlmo_tiny", vocab_size=30)[3] is None


def cli_model_factory(name, **kwargs):
    from vlmo_pipeline.models import create_model_and_transforms

    return create_model_and_transforms(name, **kwargs)
