"""Custom Kedro datasets: directories that the library writes into (raw trees, Arrow datasets, checkpoints)."""

from vlmo_pipeline.datasets.directory import DirectoryDataset

__all__ = ["DirectoryDataset"]
