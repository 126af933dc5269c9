"""Shared settings for the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_intra_op_thread():
    """Run tiny-model tests on one intra-op thread.

    The tensors here are so small that OpenMP threading only adds overhead, and on a busy 2-core
    machine thread oversubscription made a tiny forward pass ~10x slower. Restored after each test.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
