"""Total reward = weighted sum of named components (EMO-RL eq. 4: format + accuracy)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


@dataclass
class RewardSet:
    """Named reward functions (TRL convention) and their weights."""

    functions: Mapping[str, Callable[..., list[float]]]
    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(self.functions)
        if unknown:
            raise ValueError(f"reward weights name unknown components {sorted(unknown)}; components: {sorted(self.functions)}")

    def __call__(self, completions: list[str], **columns) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Score N completions.

        Returns:
            ``(total, components)``: (N,) weighted sum, and each component's (N,) raw values.
        """
        components = {}
        for name, fn in self.functions.items():
            values = fn(completions, **columns)
            if len(values) != len(completions):
                raise ValueError(f"reward {name!r} returned {len(values)} values for {len(completions)} completions")
            components[name] = torch.tensor([float("nan") if v is None else float(v) for v in values])
        total = sum(self.weights.get(name, 1.0) * torch.nan_to_num(v, nan=0.0) for name, v in components.items())
        return total, components
