"""An exponential moving average (EMA) of a model's weights, for evaluation and shipping.

After every optimiser step, each floating-point entry of the model's ``state_dict`` moves towards the
trained model's::

    ema = d * ema + (1 - d) * weights,    d = min(decay, (1 + n) / (10 + n))

where ``n`` is the number of updates made before this one. The warm-up term (as in TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``) keeps the random initial weights from dominating the
average early on: at decay 0.999, plain EMA would still hold 74% of the initial weights after 300 steps
(one GTSRB epoch); with the warm-up the full decay applies from about 9,000 steps.

Batch-norm running statistics are averaged like the weights, not copied: the EMA weights are an average
over the last ~1 / (1 - d) steps, and the statistics averaged over the same steps describe the
activations of that average better than the latest ones, which belong to the latest weights alone.
Integer buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ModelEma"]


class ModelEma:
    """A frozen copy of a model whose weights are the exponential moving average of the trained ones.

    Args:
        model: the model being trained (not a DDP or compiled wrapper of it): averaged from at every
            :meth:`update`, and copied now (weights, buffers, memory format) as the start.
        decay: the decay ``d`` in (0, 1), e.g. 0.999 (an average over roughly the last 1,000 steps).

    Attributes:
        source: the trained model.
        module: the averaged model, in eval mode, without gradients.
        decay: the decay.
        updates: the number of :meth:`update` calls so far.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> ema = ModelEma(model, decay=0.99)
        >>> ema.update()
        >>> ema.updates
        1
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise ValueError(f"EMA decay must be a number in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.source = model
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses: ``min(decay, (1 + n) / (10 + n))``."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the source's weights (call after each optimiser step)."""
        d = self.current_decay()
        averaged = self.module.state_dict()
        for name, value in self.source.state_dict().items():
            target = averaged[name]
            if target.is_floating_point():
                target.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                target.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``decay`` and ``updates`` (plain values; the weights are :attr:`module`'s ``state_dict``)."""
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, Tensor]) -> None:
        """Restore a saved average: its ``state_dict()`` and its weights.

        Raises:
            ValueError: ``state`` is not what :meth:`state_dict` writes, or its decay is another one.
            RuntimeError: the weights do not fit the model (torch's message).
        """
        updates, decay = state.get("updates"), state.get("decay")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"EMA state needs 'updates', an int >= 0, got {updates!r}")
        if decay != self.decay:
            raise ValueError(f"EMA state has decay {decay!r}, this run {self.decay!r}")
        self.module.load_state_dict(weights)
        self.updates = updates
