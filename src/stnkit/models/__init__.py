"""The paper's classifiers behind a registry: ``create_model(name, **kwargs)``, ``list_models()``.

Every model takes ``in_channels``, ``num_classes`` and ``image_size`` and exposes its stages:
``model.stn`` (the input transformer, None for baselines) with ``localize``/``warp``,
``transform(x)``, ``forward_features(x)``, ``forward_head(features)``.
``create_model(name, pretrained=True)`` loads shipped weights (:mod:`stnkit.models.pretrained`).
"""

from stnkit.models import gtsrb, mnist  # noqa: F401  (registers the builders)
from stnkit.models.parts import (
    Classifier,
    ImageStandardize,
    LocalContrastNorm,
    ParallelSpatialTransformer,
    count_parameters,
)
from stnkit.models.pretrained import (
    PretrainedWeights,
    PretrainedWeightsError,
    get_pretrained,
    list_pretrained,
    save_pretrained,
)
from stnkit.models.registry import (
    ModelArgumentError,
    UnknownModelError,
    create_model,
    list_models,
    model_entrypoint,
    register_model,
)

__all__ = [
    "Classifier",
    "ImageStandardize",
    "LocalContrastNorm",
    "ModelArgumentError",
    "ParallelSpatialTransformer",
    "PretrainedWeights",
    "PretrainedWeightsError",
    "UnknownModelError",
    "count_parameters",
    "create_model",
    "get_pretrained",
    "list_models",
    "list_pretrained",
    "model_entrypoint",
    "register_model",
    "save_pretrained",
]
