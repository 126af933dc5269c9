"""One console line per event from the training stack: Lightning's own handler, banner and a known deprecation.

* ``import lightning`` attaches its own ``StreamHandler`` (format ``INFO: ...``) to the ``lightning`` logger *and*
  leaves it propagating, so under Kedro (whose ``conf/logging.yml`` puts a handler on the root logger) every
  Lightning record is printed twice. When the application has configured the root logger, the handlers Lightning
  attached itself (plain stderr ``StreamHandler``\\ s of ``lightning``, ``lightning.pytorch``,
  ``lightning.fabric``) are removed and the records propagate to the application's handler once. Kedro imports
  Lightning lazily (inside the training node, after its logging is configured), so ``conf/logging.yml`` alone
  cannot do this.
* ``lightning.pytorch.utilities.rank_zero`` INFO is the per-run banner (GPU/TPU available, the litlogger tip,
  "``Trainer.fit`` stopped: ``max_steps`` reached"); the runner logs device, precision and steps itself. Its level
  is set to WARNING unless something (``conf/logging.yml``) configured it already; warnings still show.
* Lightning 2.6's ``utilities/_pytree.py`` constructs ``torch.utils._pytree.LeafSpec``, deprecated in torch 2.14
  (``FutureWarning``, printed once per process). Harmless to us (Lightning's internal batch flattening, fixed
  upstream by a later Lightning), so exactly that warning is filtered.
"""

from __future__ import annotations

import logging
import sys
import warnings

__all__ = ["configure_training_logs", "LIGHTNING_LOGGERS", "RANK_ZERO_LOGGER"]

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def _is_lightning_default_handler(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (sys.stderr, sys.__stderr__)


def configure_training_logs() -> None:
    """Apply the three fixes of the module docstring (idempotent; call after ``import lightning``)."""
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    if logging.getLogger().handlers:  # the application configured logging: route Lightning's records to it
        for name in LIGHTNING_LOGGERS:
            lightning_logger = logging.getLogger(name)
            for handler in list(lightning_logger.handlers):
                if _is_lightning_default_handler(handler):
                    lightning_logger.removeHandler(handler)
            lightning_logger.propagate = True
    rank_zero = logging.getLogger(RANK_ZERO_LOGGER)
    if rank_zero.level == logging.NOTSET:
        rank_zero.setLevel(logging.WARNING)
