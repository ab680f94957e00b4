"""Training engine: config, ``train_one_epoch`` / ``evaluate`` / ``fit``, checkpoints, DDP.

The engine knows no dataset and no particular model: it trains any classifier on any loader of
``(images, labels)`` batches.
"""

from stnkit.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stnkit.engine.config import TrainConfig, config_from_dict, paper_config
from stnkit.engine.distributed import DistContext, cleanup_distributed, init_distributed
from stnkit.engine.loop import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    DivergenceError,
    FitResult,
    ResumeMismatchError,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    localization_parameters,
    train_one_epoch,
)
from stnkit.engine.metrics import append_jsonl, read_jsonl

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "CheckpointError",
    "DistContext",
    "DivergenceError",
    "FitResult",
    "ResumeMismatchError",
    "TrainConfig",
    "append_jsonl",
    "build_optimizer",
    "build_scheduler",
    "cleanup_distributed",
    "config_from_dict",
    "evaluate",
    "fit",
    "init_distributed",
    "load_checkpoint",
    "localization_parameters",
    "paper_config",
    "read_jsonl",
    "save_checkpoint",
    "train_one_epoch",
]
