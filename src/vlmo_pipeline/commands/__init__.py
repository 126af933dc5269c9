"""The programs users run, apart from the library: the `vlmo` command (`vlmo.py`, its model sub-commands in
`model.py`) and one training run outside Kedro (`train.py`, also reachable as ``python -m vlmo_pipeline.train``,
the torchrun entry point). They parse arguments and print; the work is the library's."""
