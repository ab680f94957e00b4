"""The paper's experiments as grids of training runs: the cells, their result files, the report.

``stnkit reproduce`` trains each :class:`Cell` of a grid (one dataset, one model, one recipe) once per
seed and leaves one result file per run (:func:`cell_result`); ``stnkit reproduce --report`` renders
docs/paper-results.md from those files (:func:`render_report`) with a picture of each transformer
(:func:`render_pictures`). The same from Python:

Example:
    >>> from stnkit.reproduce import cells_of, load_results, render_report
    >>> ", ".join(cell.name for cell in cells_of("tc"))
    'tc-fcn, tc-cnn, tc-st-fcn-affine, tc-st-cnn-affine, tc-fcn-e100, tc-st-fcn-affine-e100'
    >>> results = load_results("results")  # doctest: +SKIP
    >>> page = render_report(results)  # doctest: +SKIP
"""

from stnkit.reproduce.grids import (
    DEFAULT_RECIPE,
    GRIDS,
    GTSRB_RECIPE,
    GTSRB_SELECT_10K_RECIPE,
    GTSRB_SELECT_RECIPE,
    HEADLINE_MODELS,
    LONG_FCN_RECIPE,
    RECIPES,
    SEEDS,
    SHARED_DEVIATIONS,
    Cell,
    Recipe,
    cells_of,
    device_kind,
    is_selection,
)
from stnkit.reproduce.report import (
    CAPTIONS_NAME,
    GLANCE_END,
    GLANCE_START,
    PICTURE_DIR,
    PICTURE_IMAGES,
    UNDERFIT_RATIO,
    Picture,
    RobustnessFigure,
    final_fit,
    next_lever,
    render_glance,
    render_pictures,
    render_report,
    replace_glance,
)
from stnkit.reproduce.results import (
    RESULT_VERSION,
    ResultFileError,
    cell_parameters,
    cell_result,
    format_mean_sd,
    load_results,
    machine_facts,
    results_by_cell,
)

__all__ = [
    "CAPTIONS_NAME",
    "DEFAULT_RECIPE",
    "GLANCE_END",
    "GLANCE_START",
    "GRIDS",
    "GTSRB_RECIPE",
    "GTSRB_SELECT_10K_RECIPE",
    "GTSRB_SELECT_RECIPE",
    "HEADLINE_MODELS",
    "LONG_FCN_RECIPE",
    "PICTURE_DIR",
    "PICTURE_IMAGES",
    "RECIPES",
    "RESULT_VERSION",
    "SEEDS",
    "SHARED_DEVIATIONS",
    "UNDERFIT_RATIO",
    "Cell",
    "Picture",
    "Recipe",
    "ResultFileError",
    "RobustnessFigure",
    "cell_parameters",
    "cell_result",
    "cells_of",
    "device_kind",
    "final_fit",
    "format_mean_sd",
    "is_selection",
    "load_results",
    "machine_facts",
    "next_lever",
    "render_glance",
    "render_pictures",
    "render_report",
    "replace_glance",
    "results_by_cell",
]
