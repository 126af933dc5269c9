"""Several nodes: a Kedro node writes the launch files and stops with the commands; the written torchrun script,
started as two "nodes" on this machine (two torchrun agents, one process each, c10d rendezvous over 127.0.0.1),
trains one stage-3 run whose rank 0 exports the model (issue #13)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

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


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, f"the run ended before {path} appeared:\n{process.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


@pytest.mark.slow
def test_slurm_preemption_signal_saves_requeues_and_the_requeued_job_resumes(tiny_world: Path, tmp_path: Path):
    """What sbatch.sh sets up, with SLURM's side played by its variables and an `scontrol` on PATH that records
    the requeue and kills the job as SLURM does: SIGUSR1 → Lightning saves hpc_ckpt_1.ckpt and requeues; the
    requeued job (same command) resumes from it rather than from the older last.ckpt, finishes, and removes it."""
    config = tiny_run("stage1", tiny_world, tmp_path, steps=200)
    config.trainer.checkpoint_every_n_steps = 5
    params = tmp_path / "params.yml"
    params.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    bin_dir, requeued = tmp_path / "bin", tmp_path / "requeued.txt"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {requeued}\nkill -KILL $PPID\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_JOB_ID": "4242"}
    slurm.update(SLURM_JOB_NAME="vlmo-stage1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0")
    env = {**os.environ, **slurm, "SLURM_NODELIST": "localhost", "MASTER_PORT": str(_free_port())}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    command = [sys.executable, "-m", "vlmo_pipeline.train", "stage1", "--params", str(params)]
    checkpoints = config.checkpoint_dir

    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(checkpoints / "last.ckpt", job)
    job.send_signal(signal.SIGUSR1)  # SLURM: "--signal=SIGUSR1@120", the time limit is near
    output = job.communicate(timeout=120)[0]
    assert job.returncode == -signal.SIGKILL, output[-3000:]
    assert requeued.read_text().split() == ["requeue", "4242"]
    assert (checkpoints / "hpc_ckpt_1.ckpt").is_file()

    requeued_job = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    output = requeued_job.stdout + requeued_job.stderr
    assert requeued_job.returncode == 0, output[-3000:]
    assert f"resuming from {checkpoints / 'hpc_ckpt_1.ckpt'}" in output
    summary = json.loads((Path(config.output_dir) / "training_summary.json").read_text())
    assert summary["global_step"] == 200
    assert not list(checkpoints.glob("hpc_ckpt_*.ckpt")), "a finished run keeps no preemption checkpoint"
