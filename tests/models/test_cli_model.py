"""`vlmo embed / retrieve / vqa` on a tiny saved model (random weights, real files).

Error handling is checked twice: in-process (``args.func``, fast, many cases) and through real ``vlmo`` processes
(``python -m vlmo_pipeline.commands.vlmo``) for the reported cases: a wrong model dir, a corrupt ``config.json``, a
missing image and a text file posing as an image, for each command. Every failure is one stderr line naming the
file, exit status 1 (runtime) or 2 (usage).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from vlmo_pipeline.commands import model as cli_model
from vlmo_pipeline.commands import vlmo as console
from vlmo_pipeline.models import VLMo, create_model

PIL = pytest.importorskip("PIL.Image")
WORDS = ["a", "red", "blue", "green", "circle", "square", "left", "right", "of", "the", "is", "what", "color", "?"]
ANSWERS = ["red", "blue", "green", "circle", "square", "yes"]


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
    model = create_model(
        "vlmo_tiny", vocab_size=len(WORDS) + 5, loss_names=("irtr", "vqa"), vqa_num_labels=len(ANSWERS)
    )
    model.save_pretrained(root / "model", vocab_file=vocab)
    (root / "model" / "answer_vocab.json").write_text(json.dumps(ANSWERS))
    images = root / "images"
    images.mkdir()
    for name, color in [("red.png", (220, 20, 20)), ("blue.png", (20, 20, 220)), ("green.jpg", (20, 200, 20))]:
        PIL.new("RGB", (80, 60), color).save(images / name)
    (root / "queries.txt").write_text("a red circle\n\nthe blue square\n")
    # Broken inputs shared by the error tests.
    shutil.copytree(root / "model", root / "bad_config")
    (root / "bad_config" / "config.json").write_text('{"depth": 4,, "num_heads": 4}')
    fake = root / "fake_images"
    fake.mkdir()
    (fake / "notes.png").write_text("a text file posing as an image\n")
    return root, model


def one_error_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"vlmo {command}: error: "), lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------- commands


def test_retrieve_text_to_images(workspace, capsys):
    root, model = workspace
    args = parse(
        [
            "retrieve",
            "--model",
            str(root / "model"),
            "--images",
            str(root / "images"),
            "--query",
            "a red circle",
            "--top-k",
            "2",
            "--json",
        ]
    )
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
    args = parse(
        [
            "retrieve",
            "--model",
            str(root / "model"),
            "--image",
            str(root / "images" / "red.png"),
            "--texts",
            str(root / "queries.txt"),
        ]
    )
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
    args = parse(
        [
            "embed",
            "--model",
            str(root / "model"),
            "--images",
            str(root / "images"),
            "--texts",
            str(root / "queries.txt"),
            "--output",
            str(out),
        ]
    )
    assert args.func(args) == 0
    with safe_open(str(out), "pt") as handle:
        assert handle.get_tensor("image_embeds").shape == (3, 128)
        assert handle.get_tensor("text_embeds").shape == (2, 128)
        assert json.loads(handle.metadata()["texts"]) == ["a red circle", "the blue square"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.safetensors", "images.json", "images.npy"]  # no temps


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_embed_outputs_get_plain_open_modes(workspace, tmp_path, capsys, mask):
    """Outputs are 0o666 & ~umask (as a plain open() gives), not the 0o600 of tempfile.mkstemp."""
    root, _ = workspace
    previous = os.umask(mask)
    try:
        for name in ("texts.npy", "texts.safetensors"):
            args = parse(
                [
                    "embed",
                    "--model",
                    str(root / "model"),
                    "--texts",
                    str(root / "queries.txt"),
                    "--output",
                    str(tmp_path / name),
                ]
            )
            assert args.func(args) == 0
    finally:
        os.umask(previous)
    written = sorted(tmp_path.iterdir())
    assert [p.name for p in written] == ["texts.json", "texts.npy", "texts.safetensors"]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: 0o666 & ~mask for p in written}


def test_vqa_prints_named_answers(workspace, capsys):
    root, model = workspace
    args = parse(
        [
            "vqa",
            "--model",
            str(root / "model"),
            "--image",
            str(root / "images" / "blue.png"),
            "--question",
            "what color is the square ?",
            "--json",
            "--top-k",
            "10",
        ]
    )
    assert args.func(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert sorted(r["answer"] for r in results) == sorted(ANSWERS)  # top-k is capped at the number of answers
    assert [r["rank"] for r in results] == list(range(1, len(ANSWERS) + 1))
    assert all(0 <= r["score"] <= 1 for r in results)


def test_vqa_shows_top5_answers_with_probabilities(workspace, capsys):
    """The default table lists the five most probable answers (sigmoid of the VQA logits), best first."""
    root, _ = workspace
    image, question = root / "images" / "blue.png", "what color is the square ?"
    args = parse(["vqa", "--model", str(root / "model"), "--image", str(image), "--question", question])
    assert args.func(args) == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    assert header.startswith(f"top 5 of {len(ANSWERS)} answers")
    loaded = cli_model.LoadedModel(str(root / "model"))
    ids, masks = loaded.text_tensors([question])
    with torch.inference_mode():
        probabilities = loaded.model.vqa_logits(ids, masks, loaded.image_tensor([image])).sigmoid()[0]
    expected = probabilities.topk(5)
    assert [row.split() for row in rows] == [
        [str(rank + 1), f"{float(p):.4f}", ANSWERS[int(i)]]
        for rank, (p, i) in enumerate(zip(expected.values, expected.indices))
    ]
    args = parse(
        ["vqa", "--model", str(root / "model"), "--image", str(image), "--question", question, "--top-k", "2", "--json"]
    )
    assert args.func(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["rank"], r["label"], r["answer"]) for r in results] == [
        (1, int(expected.indices[0]), ANSWERS[int(expected.indices[0])]),
        (2, int(expected.indices[1]), ANSWERS[int(expected.indices[1])]),
    ]
    assert results[0]["score"] == pytest.approx(float(expected.values[0]), abs=1e-6)


# ----------------------------------------------------------------------------------------- errors, in-process


def test_errors_are_reported_not_raised(workspace, tmp_path, capsys):
    root, _ = workspace
    args = parse(["retrieve", "--model", str(tmp_path), "--images", str(root / "images"), "--query", "x"])
    assert args.func(args) == 1
    line = one_error_line(capsys.readouterr().err, "retrieve")
    assert f"{tmp_path}: not a model directory: no config.json and no model.safetensors" in line
    args = parse(["retrieve", "--model", str(root / "model"), "--query", "x"])
    assert args.func(args) == 2  # a usage error, like argparse's
    assert "either --images DIR --query TEXT" in one_error_line(capsys.readouterr().err, "retrieve")
    empty = tmp_path / "empty"
    empty.mkdir()
    args = parse(["embed", "--model", str(root / "model"), "--images", str(empty), "--output", str(tmp_path / "x.npy")])
    assert args.func(args) == 1
    assert f"{empty}: no image files" in one_error_line(capsys.readouterr().err, "embed")
    args = parse(
        [
            "embed",
            "--model",
            str(root / "model"),
            "--images",
            str(root / "fake_images"),
            "--output",
            str(tmp_path / "x.npy"),
        ]
    )
    assert args.func(args) == 1
    assert f"{root / 'fake_images' / 'notes.png'}: not a readable image" in one_error_line(
        capsys.readouterr().err, "embed"
    )
    assert not (tmp_path / "x.npy").exists()


def _broken_model(root, tmp_path, name, content):
    directory = tmp_path / "model"
    shutil.copytree(root / "model", directory)
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return directory, path


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("config.json", "[1, 2]", "expected a JSON object"),
        ("config.json", json.dumps({"depth": "four"}), "config.json: depth: expected an integer, got str 'four'"),
        ("config.json", json.dumps({"no_such_field": 1}), "config.json: unknown key(s) ['no_such_field']"),
        ("config.json", json.dumps({"format_version": 99}), "config.json: format_version: expected an integer from 1"),
        ("config.json", b"\xff\xfe{", "not UTF-8 text"),
        ("model.safetensors", b"garbage bytes, not a safetensors file", "cannot load the weights"),
        ("model.safetensors", b"", "cannot load the weights"),
        ("vocab.txt", "[PAD]\n\n[UNK]\n", ":2: empty line in WordPiece vocab"),
        ("vocab.txt", "[PAD]\n[UNK]\n", "lacks the special token(s)"),
        (
            "vocab.txt",
            "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "extra"]) + "\n",
            "wrong vocabulary for this model",
        ),
        ("answer_vocab.json", '["red"]', "expected a JSON list of 6 answers in label order, got 1 entries"),
        ("answer_vocab.json", "{oops", "invalid JSON"),
    ],
)
def test_corrupt_model_files_are_one_line_naming_the_file(workspace, tmp_path, capsys, name, content, expected):
    root, _ = workspace
    directory, path = _broken_model(root, tmp_path, name, content)
    args = parse(
        ["vqa", "--model", str(directory), "--image", str(root / "images" / "red.png"), "--question", "what color ?"]
    )
    assert args.func(args) == 1
    line = one_error_line(capsys.readouterr().err, "vqa")
    assert str(path) in line and expected in line, line


def test_vqa_without_head_is_an_error(tmp_path, workspace, capsys):
    root, _ = workspace
    create_model("vlmo_tiny", vocab_size=len(WORDS) + 5, loss_names=("irtr",)).save_pretrained(
        tmp_path, vocab_file=root / "vocab.txt"
    )
    args = parse(
        ["vqa", "--model", str(tmp_path), "--image", str(root / "images" / "red.png"), "--question", "what color ?"]
    )
    assert args.func(args) == 1
    assert "no VQA head" in one_error_line(capsys.readouterr().err, "vqa")


def test_other_runtime_and_usage_errors(workspace, tmp_path, capsys):
    root, _ = workspace
    model = str(root / "model")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [
        # (argv, exit status, text the line must hold)
        (
            ["embed", "--model", model, "--texts", str(root / "queries.txt"), "--output", str(blocker / "out.npy")],
            1,
            f"{blocker / 'out.npy'}: cannot write ({blocker}: ",
        ),
        (
            ["embed", "--model", model, "--texts", str(tmp_path / "none.txt"), "--output", str(tmp_path / "o.npy")],
            1,
            f"{tmp_path / 'none.txt'}: no such text file",
        ),
        (
            [
                "embed",
                "--model",
                model,
                "--texts",
                str(root / "queries.txt"),
                "--vocab",
                str(tmp_path / "v.txt"),
                "--output",
                str(tmp_path / "o.npy"),
            ],
            1,
            f"{tmp_path / 'v.txt'}: no such vocabulary file",
        ),
        (
            [
                "embed",
                "--model",
                model,
                "--images",
                str(root / "images" / "red.png"),
                "--output",
                str(tmp_path / "o.npy"),
            ],
            1,
            f"{root / 'images' / 'red.png'}: not a directory",
        ),
        (
            ["embed", "--model", model, "--texts", str(root / "queries.txt"), "--output", str(tmp_path / "o.txt")],
            2,
            "output must end in .npy or .safetensors",
        ),
        (
            ["embed", "--model", model, "--output", str(tmp_path / "o.npy")],
            2,
            "embed needs --images DIR and/or --texts FILE",
        ),
        (
            [
                "embed",
                "--model",
                str(root / "model" / "config.json"),
                "--texts",
                str(root / "queries.txt"),
                "--output",
                str(tmp_path / "o.npy"),
            ],
            1,
            "config.json: not a directory",
        ),
        (
            ["retrieve", "--model", model, "--image", str(root / "images"), "--texts", str(root / "queries.txt")],
            1,
            f"{root / 'images'}: not a file",
        ),
        (
            [
                "vqa",
                "--model",
                model,
                "--image",
                str(root / "images" / "red.png"),
                "--question",
                "?",
                "--device",
                "nonsense",
            ],
            2,
            "--device nonsense: not a device",
        ),
    ]
    for argv, status, expected in cases:
        args = parse(argv)
        assert args.func(args) == status, argv
        line = one_error_line(capsys.readouterr().err, argv[0])
        assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_console_summary_lists_datasets_not_partition_folders(tmp_path, capsys):
    primary = tmp_path / "03_primary"
    manifest = {"dataset": "coco", "splits": {"train": 5}, "shards": [{}], "rejects": 0}
    for folder in ("coco", "coco.part-0-of-2"):
        (primary / folder).mkdir(parents=True)
        (primary / folder / "manifest.json").write_text(json.dumps(manifest))
    assert console.main(["summary", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("coco    train=5") == 1 and "1 partition folder(s) not merged yet" in out


def test_console_summary_and_demo_data_errors(tmp_path, capsys):
    manifest = tmp_path / "03_primary" / "coco" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"dataset": "coco"')
    assert console.main(["summary", "--data", str(tmp_path)]) == 1
    assert f"{manifest}: unreadable manifest" in one_error_line(capsys.readouterr().err, "summary")
    manifest.write_text('{"dataset": "coco"}')
    assert console.main(["summary", "--data", str(tmp_path)]) == 1
    assert f"{manifest}: not a dataset manifest" in one_error_line(capsys.readouterr().err, "summary")
    assert console.main(["summary", "--data", str(tmp_path / "none")]) == 1
    assert "no Arrow datasets yet" in one_error_line(capsys.readouterr().err, "summary")
    assert console.main(["demo-data", "--out", str(tmp_path / "raw"), "--images", "2", "--quiet"]) == 2
    assert "n_images must be >= 8" in one_error_line(capsys.readouterr().err, "demo-data")
    with pytest.raises(SystemExit) as exit_info:
        console.main(["retrieve", "--top-k", "0"])
    assert exit_info.value.code == 2
    assert "argument --top-k: must be at least 1, got 0" in one_error_line(capsys.readouterr().err, "retrieve")


# ----------------------------------------------------------------------------------------- errors, real processes


def vlmo(*argv, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    return subprocess.run(
        [sys.executable, "-m", "vlmo_pipeline.commands.vlmo", *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("command", ["embed", "retrieve", "vqa"])
@pytest.mark.parametrize("case", ["wrong_model_dir", "corrupt_config", "missing_image", "text_as_image"])
def test_vlmo_process_fails_with_one_line(workspace, tmp_path, command, case):
    root, _ = workspace
    model, image, folder = root / "model", root / "images" / "red.png", root / "images"  # folder: embed's input
    if case == "wrong_model_dir":
        model = named = tmp_path / "06_models" / "nope"
        expected = f"{model}: no such model directory (expected config.json + model.safetensors)"
    elif case == "corrupt_config":
        model, named = root / "bad_config", root / "bad_config" / "config.json"
        expected = f"{named}: invalid JSON (Expecting property name enclosed in double quotes: line 1 column 13"
    elif case == "missing_image":
        image, folder = tmp_path / "missing.png", tmp_path / "missing_folder"
        named = folder if command == "embed" else image
        expected = f"{named}: no such image {'folder' if command == 'embed' else 'file'}"
    else:
        image, folder = root / "fake_images" / "notes.png", root / "fake_images"
        named = image
        expected = f"{image}: not a readable image (UnidentifiedImageError: cannot identify image file)"
    inputs = {
        "embed": ["--images", folder, "--output", tmp_path / "out.npy"],
        "retrieve": ["--image", image, "--texts", root / "queries.txt"],
        "vqa": ["--image", image, "--question", "what color is the square ?"],
    }[command]
    result = vlmo(command, "--model", model, *inputs, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr, command)
    assert line.startswith(f"vlmo {command}: error: {expected}") and str(named) in line, line
    assert result.stdout == ""
    assert not (tmp_path / "out.npy").exists()


def test_vlmo_process_usage_errors_are_one_line(workspace, tmp_path):
    root, _ = workspace
    result = vlmo("retrieve", "--model", root / "model", "--query", "a red circle", cwd=tmp_path)
    assert result.returncode == 2
    assert "retrieve needs either" in one_error_line(result.stderr, "retrieve")
    result = vlmo("vqa", "--model", root / "model", "--top-k", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "argument --top-k: invalid int value: 'x'" in one_error_line(result.stderr, "vqa")


# ----------------------------------------------------------------------------------------- factory


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
