"""Test error against rotation, scale and shift of the test digits: one panel per sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_robustness"]


def plot_robustness(
    sweeps: Mapping[str, Sequence[float]],
    errors: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    units: Mapping[str, str] | None = None,
    title: str = "",
) -> Path:
    """Save a PNG: a panel per sweep, test error (%) against the sweep's values, a line per model.

    Args:
        sweeps: sweep name (e.g. ``"angle"``) -> its values, in panel order.
        errors: legend label (e.g. ``"st-cnn-affine on rts"``) -> sweep name -> error fractions,
            one per value of that sweep.
        path: PNG to write.
        units: sweep name -> unit for the x label.
        title: figure title.

    Raises:
        ValueError: an error series whose length differs from its sweep's values.
    """
    for label, series in errors.items():
        for name, values in sweeps.items():
            if len(series[name]) != len(values):
                raise ValueError(
                    f"{label!r}: {len(series[name])} errors for the {len(values)} values of {name!r}"
                )
    fig = Figure(figsize=(4.2 * len(sweeps), 3.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sweeps), squeeze=False)[0]
    for ax, (name, values) in zip(axes, sweeps.items(), strict=True):
        for label, series in errors.items():
            ax.plot(list(values), [100 * e for e in series[name]], "-o", ms=3, label=label)
        unit = (units or {}).get(name)
        ax.set(xlabel=f"{name} ({unit})" if unit else name, ylabel="test error (%)", ylim=(0, 100))
        ax.grid(True, alpha=0.3)
    if errors:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
