"""Training engine: config, ``train_one_epoch`` / ``evaluate`` / ``fit``, checkpoints, DDP, and the
analysis of per-example predictions (``predict``, averaged over views or models by ``predict_views``
and ``predict_ensemble``; errors per class, confusion, two models compared).

The engine knows no dataset and no particular model: it trains any classifier on any loader of
``(images, labels)`` batches.
"""

from stnkit.engine.analysis import (
    ClassErrors,
    Comparison,
    Predictions,
    compare_predictions,
    confusion_matrix,
    format_class_table,
    hardest_first,
    per_class_errors,
    predict,
    predict_ensemble,
    predict_views,
    select_examples,
)
from stnkit.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stnkit.engine.config import MAX_SNAPSHOT_IMAGES, TrainConfig, config_from_dict, paper_config
from stnkit.engine.device import model_device, resolve_device
from stnkit.engine.distributed import DistContext, cleanup_distributed, init_distributed
from stnkit.engine.ema import ModelEma
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
    "MAX_SNAPSHOT_IMAGES",
    "METRICS_NAME",
    "CheckpointError",
    "ClassErrors",
    "Comparison",
    "DistContext",
    "DivergenceError",
    "FitResult",
    "ModelEma",
    "Predictions",
    "ResumeMismatchError",
    "TrainConfig",
    "append_jsonl",
    "build_optimizer",
    "build_scheduler",
    "cleanup_distributed",
    "compare_predictions",
    "config_from_dict",
    "confusion_matrix",
    "evaluate",
    "fit",
    "format_class_table",
    "hardest_first",
    "init_distributed",
    "load_checkpoint",
    "localization_parameters",
    "model_device",
    "paper_config",
    "per_class_errors",
    "predict",
    "predict_ensemble",
    "predict_views",
    "read_jsonl",
    "resolve_device",
    "save_checkpoint",
    "select_examples",
    "train_one_epoch",
]
