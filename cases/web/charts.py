"""Charts of the dashboard and the reports, drawn by the vendored Chart.js (`static/js/charts.js`).

A chart is built on the server as a `Chart` and rendered by `cases/charts/chart.html`: a canvas
for sighted mouse users, the same figures as a table (screen readers, keyboard users, printing,
a failed script), and the spec as JSON that the script reads (`json_script`, so the CSP needs
no inline script). Where a bar or point stands for cases an agent can open, `links` holds one
URL per label and clicking it opens the matching queue; the table links the same URLs, which is
how keyboard users follow them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChartKind = Literal["bar", "stacked", "horizontal", "line", "doughnut"]
ValueFormat = Literal["count", "percent", "hours"]


@dataclass
class Series:
    label: str
    values: list[float | int | None]


@dataclass
class Chart:
    """One chart: `labels` along the category axis, one value per label in each series."""

    id: str
    title: str
    kind: ChartKind
    labels: list[str]
    series: list[Series]
    links: list[str | None] = field(default_factory=list)
    value_format: ValueFormat = "count"
    description: str = ""

    def spec(self) -> dict[str, Any]:
        """What `charts.js` draws: plain data, no code."""
        return {
            "kind": self.kind,
            "labels": self.labels,
            "series": [{"label": s.label, "values": s.values} for s in self.series],
            "links": self.links,
            "format": self.value_format,
        }

    def rows(self) -> list[dict[str, Any]]:
        """The table's rows: a label, its link, and one formatted value per series."""
        return [
            {
                "label": label,
                "link": self.links[index] if index < len(self.links) else None,
                "values": [format_value(s.values[index], self.value_format) for s in self.series],
            }
            for index, label in enumerate(self.labels)
        ]

    @property
    def is_empty(self) -> bool:
        return not any(v for s in self.series for v in s.values)


def format_value(value: float | int | None, value_format: ValueFormat) -> str:
    if value is None:
        return "–"
    if value_format == "percent":
        return f"{value:.1f} %"
    if value_format == "hours":
        return f"{value:.1f} h"
    return f"{value:,}"
