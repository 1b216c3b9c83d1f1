"""HTML reports: one self-contained page per result, readable by someone who is not an expert.

    Attribution / FixResult / LintResult / BenchResult ──► summary in words ──► heatmap, diff, SVG charts ──► page

``page`` holds the shell, colours and escaping, ``charts`` the SVG charts, and ``attribution``,
``fix``, ``lint`` and ``bench`` one report each. Renderers only: the verdicts and notes come from
the result objects, and nothing here touches a backend.
"""

from __future__ import annotations

from .attribution import attribution_html
from .bench import bench_html
from .fix import fix_html
from .lint import lint_html
from .page import notebook_html, page

__all__ = ["attribution_html", "fix_html", "lint_html", "bench_html", "notebook_html", "page"]
