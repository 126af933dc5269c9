"""vlmo_pipeline.files: atomic writes with the modes a plain open() gives, and its users in the model library."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vlmo_pipeline import files


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    """Run the test under a known umask (restored afterwards); the value is the umask."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(files.TEMP_SUFFIX))


def test_writers_write_content_with_plain_open_mode(tmp_path, umask):
    expected = 0o666 & ~umask
    with open(tmp_path / "plain", "w"):  # the reference: what a plain open() creates under this umask
        pass
    assert mode(tmp_path / "plain") == expected
    assert files.atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    files.atomic_write_text(tmp_path / "b.txt", "héllo\nworld\n")
    files.atomic_write_json(tmp_path / "c.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    files.atomic_write_json(str(tmp_path / "d.json"), [1], indent=None, trailing_newline=False)
    files.atomic_write_via(tmp_path / "e.dat", lambda temp: temp.write_bytes(b"via"))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "héllo\nworld\n".encode()
    assert (tmp_path / "c.json").read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"
    assert (tmp_path / "d.json").read_text() == "[1]"
    assert (tmp_path / "e.dat").read_bytes() == b"via"
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {p.name: expected for p in tmp_path.iterdir()}
    assert leftovers(tmp_path) == []


def test_replacing_resets_a_0600_file_to_the_plain_mode(tmp_path, umask):
    target = tmp_path / "old.txt"
    target.write_text("old")
    target.chmod(0o600)
    files.atomic_write_text(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o666 & ~umask


def test_writer_that_recreates_its_file_still_gets_the_plain_mode(tmp_path, umask):
    def writer(temp: Path) -> None:  # like a library that writes its own file and renames it over ours
        temp.unlink()
        handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(handle, b"data")
        os.close(handle)

    files.atomic_write_via(tmp_path / "x", writer)
    assert mode(tmp_path / "x") == 0o666 & ~umask and (tmp_path / "x").read_bytes() == b"data"


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path, error):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old contents")
    seen = []

    def writer(temp: Path) -> None:
        seen.append(temp)
        assert temp.parent == tmp_path and temp.name.startswith(".model.safetensors.") and temp.exists()
        temp.write_bytes(b"half written")
        raise error

    with pytest.raises(type(error)):
        files.atomic_write_via(target, writer)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"] and not seen[0].exists()


def test_unserialisable_json_writes_nothing(tmp_path):
    (tmp_path / "config.json").write_text('{"ok": true}')
    with pytest.raises(TypeError):
        files.atomic_write_json(tmp_path / "config.json", {"bad": object()})
    with pytest.raises(TypeError):
        files.atomic_write_bytes(tmp_path / "config.json", "not bytes")  # type: ignore[arg-type]
    assert (tmp_path / "config.json").read_text() == '{"ok": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_missing_directory_raises_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        files.atomic_write_text(tmp_path / "no" / "such" / "dir.txt", "x")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------- users in models/


def _tiny_model():
    torch = pytest.importorskip("torch")
    from vlmo_pipeline.models import create_model

    torch.manual_seed(0)
    return create_model("vlmo_tiny", vocab_size=30, loss_names=("itm",))


def test_save_pretrained_and_trained_vocab_get_plain_open_modes(tmp_path, umask):
    from vlmo_pipeline.models import VLMo
    from vlmo_pipeline.models.tokenizer import VLMoTokenizer, train_wordpiece_vocab

    vocab = train_wordpiece_vocab(
        ["a red circle left of a blue square"] * 5, tmp_path / "vocab" / "vocab.txt", vocab_size=30
    )
    assert mode(vocab) == 0o666 & ~umask and VLMoTokenizer(vocab).vocab_size <= 30
    model = _tiny_model()
    directory = model.save_pretrained(tmp_path / "model", vocab_file=vocab)
    written = sorted(directory.iterdir())
    assert [p.name for p in written] == ["config.json", "model.safetensors", "vocab.txt"]
    assert {p.name: mode(p) for p in written} == {p.name: 0o666 & ~umask for p in written}
    # Same bytes as before the switch to vlmo_pipeline.files: sorted keys, indent 2, no final newline.
    config = json.loads((directory / "config.json").read_text())
    assert (directory / "config.json").read_text() == json.dumps(config, indent=2, sort_keys=True)
    assert (directory / "vocab.txt").read_bytes() == vocab.read_bytes()
    reloaded = VLMo.from_pretrained(directory)
    assert all((reloaded.state_dict()[k] == v).all() for k, v in model.state_dict().items())


def test_failing_save_pretrained_keeps_the_old_weights(tmp_path, monkeypatch):
    import safetensors.torch

    model = _tiny_model()
    directory = model.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    def failing_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save_file)
    with pytest.raises(OSError, match="No space left"):
        model.save_pretrained(directory)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # no temp file, old files intact
