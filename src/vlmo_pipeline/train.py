"""``python -m vlmo_pipeline.train``: the torchrun / SLURM entry point of one training run, kept at this short
name (launch files, README and sbatch scripts use it); the program is :mod:`vlmo_pipeline.commands.train`."""

import sys

from vlmo_pipeline.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
