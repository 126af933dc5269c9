"""The README's "Use the model" code block runs as pasted.

The block is cut out of README.md (not copied into this file) and run by a fresh Python process in a folder laid
out like the repository after `make demo`: a generated demo world in data/01_raw and a saved model directory
(weights, config, vocab) in data/06_models/retrieval_coco. When this checkout has run the demo, the block also
runs against the real trained model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from vlmo_pipeline.data.demo import generate_demo_world
from vlmo_pipeline.models import create_model

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def readme_block(heading: str, language: str = "python") -> str:
    """The first ``language`` code block after the README's ``## heading``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)
    assert len(section) == 2, f"README.md has no '## {heading}' section"
    match = re.search(rf"```{language}\n(.*?)```", section[1], flags=re.DOTALL)
    assert match, f"README.md's '{heading}' section has no ```{language} block"
    return match.group(1)


def demo_like_checkout(root: Path) -> Path:
    """data/01_raw (a small demo world) + data/06_models/retrieval_coco (an untrained vlmo_tiny) under ``root``."""
    raw = root / "data" / "01_raw"
    generate_demo_world(raw, n_images=8, seed=0, image_size=48, show_progress=False)
    karpathy = json.loads((raw / "coco" / "karpathy" / "dataset_coco.json").read_text(encoding="utf-8"))
    words = sorted(
        {
            word
            for image in karpathy["images"]
            for sentence in image["sentences"]
            for word in re.findall(r"[a-z]+|[^a-z\s]", sentence["raw"].lower())
        }
    )
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n", encoding="utf-8")
    model = create_model("vlmo_tiny", vocab_size=len(SPECIAL_TOKENS) + len(words), image_size=48)
    model.save_pretrained(root / "data" / "06_models" / "retrieval_coco", vocab_file=vocab)
    return root


def run_block(code: str, cwd: Path) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"README block failed in {cwd}:\n{result.stderr[-3000:]}"
    return result.stdout.strip().splitlines()


def check_scores(lines: list[str]) -> None:
    """Two images, each printed with its name and its two cosine similarities."""
    assert len(lines) == 2, lines
    for line in lines:
        name, scores = line.split(" ", 1)
        assert name.endswith(".jpg")
        values = json.loads(scores)
        assert len(values) == 2 and all(-1.0 <= value <= 1.0 for value in values), line


def test_use_the_model_block_runs_as_pasted(tmp_path: Path) -> None:
    check_scores(run_block(readme_block("Use the model"), demo_like_checkout(tmp_path)))


def test_use_the_model_block_on_the_demo_model() -> None:
    if not (REPO / "data" / "06_models" / "retrieval_coco" / "model.safetensors").is_file():
        pytest.skip("no trained demo model in this checkout (run `make demo`)")
    check_scores(run_block(readme_block("Use the model"), REPO))


def test_common_questions_point_at_files_and_tests_that_exist() -> None:
    """Every `path` and `tests/...::test_name` the README's answers cite exists (answers must not rot)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Answers to common questions\n", 1)[1].split("\n## ", 1)[0]
    cited_tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", section)
    assert len(cited_tests) >= 4, cited_tests
    for path, name in cited_tests:
        source = (REPO / path).read_text(encoding="utf-8")
        assert f"def {name}(" in source, f"README cites {path}::{name}, which does not exist"
    for path in re.findall(r"`((?:src|docs)/[\w/.]+)`", section):
        assert (REPO / path).exists(), f"README cites {path}, which does not exist"
    assert "vlmo embed" in section and "--output" in section
