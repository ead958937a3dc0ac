"""The loss chart as inline SVG: two polylines (training, validation) over the steps, drawn on
the server, so the htmx refresh of the job page redraws it with no script."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT, PAD = 640, 220, 40


@dataclass(frozen=True)
class Chart:
    train: str  # "x,y x,y ..." for <polyline points>
    validation: str
    y_max: float
    y_min: float
    steps: int
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD

    @property
    def right(self) -> int:
        return self.width - self.pad

    @property
    def bottom(self) -> int:
        return self.height - self.pad


def loss_chart(losses: list[dict[str, Any]]) -> Chart | None:
    values = [p[k] for p in losses for k in ("train", "validation") if p.get(k) is not None]
    if not values:
        return None
    top, low = max(values), min(values)
    span = (top - low) or 1.0
    last = max(p["step"] for p in losses) or 1

    def line(key: str) -> str:
        points = []
        for p in losses:
            if p.get(key) is None:
                continue
            x = PAD + (WIDTH - 2 * PAD) * p["step"] / last
            y = PAD + (HEIGHT - 2 * PAD) * (top - p[key]) / span
            points.append(f"{x:.1f},{y:.1f}")
        return " ".join(points)

    return Chart(
        train=line("train"), validation=line("validation"), y_max=top, y_min=low, steps=last
    )
