"""Pictures of spatial transformers and training runs (the only module that imports matplotlib).

- :func:`plot_transformer`: inputs with the sampling grid drawn over them, beside the outputs.
- :func:`transformer_frame` / :func:`save_gif`: the transformer's output on a fixed batch per epoch.
- :func:`plot_curves`: loss and error per epoch.
- :func:`plot_confusion`: a classifier's errors as a confusion picture (diagonal blank, log colours).
- :func:`plot_model_comparison` / :func:`plot_comparison`: two models on the images where they
  disagree, with their transformers' outputs.
- :func:`plot_robustness`: test error against rotation, scale and shift of the test digits.
- :func:`write_report`: ``report.md`` + self-contained ``report.html`` for a run folder.
- :func:`save_epoch_frame` / :func:`finish_run`: a training run's frames, pictures and report.
"""

from stnkit.viz.comparison import (
    ComparisonSection,
    plot_comparison,
    plot_model_comparison,
    transformer_outputs,
)
from stnkit.viz.confusion import plot_confusion
from stnkit.viz.curves import plot_curves
from stnkit.viz.gif import montage, save_gif, transformer_frame
from stnkit.viz.report import write_report
from stnkit.viz.robustness import plot_robustness
from stnkit.viz.run import FRAMES_DIR, PICTURES, finish_run, machine_description, save_epoch_frame
from stnkit.viz.transformer import (
    View,
    grid_to_pixels,
    plot_transformer,
    to_display,
    transformer_views,
)

__all__ = [
    "FRAMES_DIR",
    "PICTURES",
    "ComparisonSection",
    "View",
    "finish_run",
    "grid_to_pixels",
    "machine_description",
    "montage",
    "plot_comparison",
    "plot_confusion",
    "plot_curves",
    "plot_model_comparison",
    "plot_robustness",
    "plot_transformer",
    "save_epoch_frame",
    "save_gif",
    "to_display",
    "transformer_frame",
    "transformer_outputs",
    "transformer_views",
    "write_report",
]
