"""Several nodes: a Kedro node writes the launch files and stops with the commands; the written torchrun script,
started as two "nodes" on this machine (two torchrun agents, one process each, c10d rendezvous over 127.0.0.1),
trains one stage-3 run whose rank 0 exports the model (issue #13)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vlmo_pipeline.training.launch import train_for_catalog
from vlmo_pipeline.training.multinode import MultiNodeLaunchRequired, launch_folder

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_node_run(tiny_world: Path, workdir: Path):
    return tiny_run(
        "stage3",
        tiny_world,
        workdir,
        steps=3,
        vocab_file=str(tiny_world.parent / "vocab" / "vocab.txt"),
        trainer={
            "max_steps": 3,
            "log_every_n_steps": 1,
            "progress_bar": False,
            "checkpoint_every_n_steps": 1,
            "accelerator": "cpu",
            "devices": 1,
            "num_nodes": 2,
        },
    )


def test_kedro_node_writes_launch_files_and_names_the_commands(tiny_world: Path, tmp_path: Path):
    config = _two_node_run(tiny_world, tmp_path)
    with pytest.raises(MultiNodeLaunchRequired) as error:
        train_for_catalog(config)
    folder = launch_folder(config)
    message = str(error.value)
    assert f"bash {folder / 'torchrun.sh'}" in message and f"sbatch {folder / 'sbatch.sh'}" in message
    assert not Path(config.output_dir).exists(), "nothing is trained or exported from the Kedro node"
    sbatch = (folder / "sbatch.sh").read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --signal=SIGUSR1@120", "--requeue"):
        assert line in sbatch
    assert f"srun {sys.executable} -m vlmo_pipeline.train stage3 --params {folder / 'params.yml'}" in sbatch
    # bash can parse both scripts
    for script in ("torchrun.sh", "sbatch.sh"):
        subprocess.run(["bash", "-n", str(folder / script)], check=True)


@pytest.mark.slow
def test_written_torchrun_script_trains_across_two_nodes(tiny_world: Path, tmp_path: Path):
    config = _two_node_run(tiny_world, tmp_path)
    with pytest.raises(MultiNodeLaunchRequired):
        train_for_catalog(config)
    script = launch_folder(config) / "torchrun.sh"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-4000:]
    model_dir = Path(config.output_dir)
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert summary["global_step"] == 3
    assert summary["devices"] == 2, "one world of two ranks, one per node"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "lightning" / "last.ckpt").is_file()
