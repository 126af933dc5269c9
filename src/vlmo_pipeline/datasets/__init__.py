"""Custom Kedro datasets: directories that the library writes into (raw trees, Arrow datasets, checkpoints), and
entries that only name the folders a node works in."""

from vlmo_pipeline.datasets.directory import DirectoryDataset
from vlmo_pipeline.datasets.paths import PathsDataset

__all__ = ["DirectoryDataset", "PathsDataset"]
