"""Multi-node runs: the files and commands that start ``python -m vlmo_pipeline.train`` on every node.

A Kedro node runs on one machine, so it cannot start processes on others (and Lightning's own launcher would re-run
the Kedro pipeline in every rank: kedro-org/kedro#2049). For ``trainer.num_nodes > 1`` the node therefore writes a
launch folder and stops with :class:`MultiNodeLaunchRequired`, whose message holds the exact commands:

``<log_dir>_launch/params.yml``
    the run's resolved configuration (catalog paths included), read by every rank;
``<log_dir>_launch/torchrun.sh``
    ``bash torchrun.sh`` on every node, with ``MASTER_ADDR`` set to the first node's address (c10d rendezvous, so
    the node order does not matter; ``--node_rank`` is only needed with a static rendezvous, see README);
``<log_dir>_launch/sbatch.sh``
    ``sbatch sbatch.sh`` on a SLURM cluster: ``srun`` starts one task per GPU and Lightning reads its rank from
    SLURM's variables. The job asks for ``SIGUSR1`` 120 s before its time limit and is requeueable: Lightning saves
    ``hpc_ckpt_<n>.ckpt`` into the run's checkpoint folder and requeues the job, which resumes from it.

The folder sits beside ``log_dir``, not in it: a fresh run empties ``log_dir``. Rank 0 writes the checkpoints, the
exported model (``output_dir``) and the logs, as on one node; after the job, ``dvc commit <stage>`` records them.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import yaml

from vlmo_pipeline.files import atomic_write_text
from vlmo_pipeline.training.config import RunConfig

__all__ = ["MultiNodeLaunchRequired", "RENDEZVOUS_PORT", "launch_folder", "write_launch_files"]

#: Port of the c10d rendezvous on the first node (torchrun's default master port).
RENDEZVOUS_PORT = 29500


class MultiNodeLaunchRequired(RuntimeError):
    """``trainer.num_nodes > 1`` in a Kedro node: the launch files are written; the message says how to start."""


def launch_folder(config: RunConfig) -> Path:
    log_dir = Path(config.log_dir)
    return log_dir.with_name(f"{log_dir.name}_launch")


def _train_command(config: RunConfig, params: Path) -> str:
    return shlex.join([sys.executable, "-m", "vlmo_pipeline.train", config.name, "--params", str(params)])


def write_launch_files(config: RunConfig, project_dir: str | os.PathLike | None = None) -> MultiNodeLaunchRequired:
    """Write ``params.yml``, ``torchrun.sh`` and ``sbatch.sh`` (see module docstring) and return the error to raise."""
    project = Path(project_dir or Path.cwd()).resolve()
    folder = launch_folder(config)
    if not folder.is_absolute():
        folder = project / folder
    params = folder / "params.yml"
    nodes, devices = config.trainer.num_nodes, config.trainer.devices
    train = _train_command(config, params)
    atomic_write_text(params, yaml.safe_dump(config.to_dict(), sort_keys=False), parents=True)
    torchrun = f"""#!/usr/bin/env bash
# {config.name}: {nodes} nodes x {devices} devices. Run this on every node, with MASTER_ADDR set to the first node's
# address (all nodes the same value), from a folder every node sees at the same path:
#   MASTER_ADDR=node001 bash {folder / "torchrun.sh"}
set -euo pipefail
cd {shlex.quote(str(project))}
exec {shlex.quote(sys.executable)} -m torch.distributed.run \\
  --nnodes={nodes} --nproc_per_node={devices} \\
  --rdzv_backend=c10d \\
  --rdzv_endpoint="${{MASTER_ADDR:?set MASTER_ADDR to the first node}}:${{MASTER_PORT:-{RENDEZVOUS_PORT}}}" \\
  --rdzv_id={shlex.quote(config.name)} \\
  -m vlmo_pipeline.train {shlex.quote(config.name)} --params {shlex.quote(str(params))}
"""
    sbatch = f"""#!/usr/bin/env bash
#SBATCH --job-name=vlmo-{config.name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={devices}
#SBATCH --gpus-per-node={devices}
#SBATCH --cpus-per-task=8
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={folder / "slurm-%j.out"}
# One task per GPU: Lightning takes ranks from SLURM's variables. Before the time limit SLURM sends SIGUSR1:
# Lightning saves hpc_ckpt_<n>.ckpt into {config.checkpoint_dir} and requeues the job, which resumes from it.
set -euo pipefail
cd {shlex.quote(str(project))}
srun {train}
"""
    atomic_write_text(folder / "torchrun.sh", torchrun)
    atomic_write_text(folder / "sbatch.sh", sbatch)
    return MultiNodeLaunchRequired(
        f"{config.name}: trainer.num_nodes={nodes} cannot be started from a Kedro node (it runs on one machine). "
        f"The launch files are in {folder}. On every node, from {project}: "
        f"MASTER_ADDR=<first node> bash {folder / 'torchrun.sh'} ; or on SLURM: sbatch {folder / 'sbatch.sh'} . "
        f"Afterwards `dvc commit` the stage to record rank 0's outputs ({config.output_dir})."
    )
