"""Wrong parameter types and mismatched model configs stop real runs with one error that names the file, the key,
the expected type and the value, before anything is trained, generated, allocated or written (issue #12 item 8)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_entry_point_refuses_wrong_types_naming_file_and_keys(tmp_path: Path):
    """`python -m vlmo_pipeline.train` with the conf/base stage-1 file, two values of the wrong type: exit 1, one
    stderr line naming both keys, nothing written (before: `augment: "false"` trained with augmentation on)."""
    document = yaml.safe_load((REPO / "conf" / "base" / "parameters_pretrain_stage1.yml").read_text())
    section = document["pretrain_stage1"]
    section["output_dir"] = str(tmp_path / "models" / "stage1")
    section["log_dir"] = str(tmp_path / "reports" / "stage1")
    section["data"]["augment"] = "false"
    section["trainer"]["max_steps"] = 20.7
    params = tmp_path / "params.yml"
    params.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [sys.executable, "-m", "vlmo_pipeline.train", "pretrain_stage1", "--params", str(params)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"error: {params}: pretrain_stage1.data.augment: expected true or false, got str 'false'; "
        "pretrain_stage1.trainer.max_steps: expected an integer, got float 20.7"
    )
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()


def test_kedro_run_refuses_a_wrong_type_before_the_node_writes(kedro_project: Path):
    """`kedro run --pipeline=demo_data` with a fractional image count fails naming the parameters file and key;
    no raw tree and no staging folder is created."""
    env = {key: value for key, value in os.environ.items() if key != "KEDRO_LOGGING_CONFIG"}
    env["KEDRO_DISABLE_TELEMETRY"] = "true"
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipeline=demo_data", "--params", "demo_data.n_images=20.5"],
        cwd=kedro_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "parameters_demo_data.yml: demo_data.n_images: expected an integer, got float 20.5" in output
    assert list((kedro_project / "data" / "01_raw").iterdir()) == []
    assert list((kedro_project / "data" / "02_intermediate").iterdir()) == []


@pytest.fixture(scope="module")
def saved_tiny_model(tmp_path_factory) -> Path:
    from vlmo_pipeline.models import create_model

    directory = tmp_path_factory.mktemp("model") / "tiny"
    create_model("vlmo_tiny", vocab_size=64).save_pretrained(directory)
    return directory


def _with_config(saved: Path, target: Path, **changes) -> Path:
    shutil.copytree(saved, target)
    config = json.loads((saved / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **changes}))
    return target


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_heads": "4"}, "config.json: num_heads: expected an integer, got str '4'"),
        ({"num_heads": 0}, "config.json: invalid VLMoConfig: num_heads=0 must be >= 1"),
        ({"format_version": 99}, "config.json: format_version: expected an integer from 1 to 1"),
        (
            {"depth": 100000},
            "model.safetensors: the weights hold 4 transformer blocks but the config says depth=100000",
        ),
        ({"embed_dim": 256}, "model.safetensors: 119 tensor(s) differ in shape from what config.json describes"),
        ({"vocab_size": 30522}, "model.safetensors: 3 tensor(s) differ in shape"),
    ],
)
def test_model_config_is_typed_and_checked_against_the_weights_header(saved_tiny_model, tmp_path, changes, message):
    """In a fresh process (so its peak memory is the load's alone): a bad config.json is refused before the model is
    built; sizes that do not match the weights are refused from the safetensors header, before allocating (before:
    ``num_heads: 0`` gave ZeroDivisionError, ``depth: 100000`` allocated gigabytes, ``format_version: 99`` loaded)."""
    directory = _with_config(saved_tiny_model, tmp_path / "model", **changes)
    script = (
        "import sys\n"
        "from vlmo_pipeline.models import VLMo\n"
        "try:\n"
        f"    VLMo.from_pretrained({str(directory)!r})\n"
        "except ValueError as error:\n"
        "    print(error)\n"
        # VmHWM, not ru_maxrss: the latter keeps the forking parent's (pytest's) pages across exec
        "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "    print(int(status.split()[0]) // 1024)\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    error, peak_mib = result.stdout.strip().splitlines()
    assert error.startswith(str(directory)) and message in error, error
    assert int(peak_mib) < 1500, f"peak RSS {peak_mib} MiB: the model was allocated before the check"


def test_cli_names_the_config_problem_in_one_line(saved_tiny_model, tmp_path):
    directory = _with_config(saved_tiny_model, tmp_path / "model", hflip="yes")
    texts = tmp_path / "texts.txt"
    texts.write_text("a red square\n")
    vlmo = Path(sys.executable).with_name("vlmo")
    result = subprocess.run(
        [str(vlmo), "embed", "--model", str(directory), "--texts", str(texts), "--output", str(tmp_path / "e.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{directory / 'config.json'}: unknown key(s) ['hflip']; known: [" in result.stderr
    assert not (tmp_path / "e.npy").exists()
