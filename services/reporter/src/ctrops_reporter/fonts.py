"""The Korean font of the PDF and its charts: NanumGothic, TrueType, from PyPI.

The font files come with the ``koreanize-matplotlib`` package (pinned in this service's
pyproject), so ``make install`` brings them on a fresh machine without root. We only
read the files: importing that package would change matplotlib's global settings.
ReportLab embeds TrueType (glyf) outlines, which NanumGothic has; CFF-flavoured .otf
Korean fonts (Noto Sans KR/CJK) would be refused. Licence: SIL Open Font License 1.1
(NanumGothic by NAVER / Sandoll); docs/reports.md has the details.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

FONT_PACKAGE = "koreanize_matplotlib"
REGULAR_FILE, BOLD_FILE = "NanumGothic.ttf", "NanumGothicBold.ttf"
PDF_REGULAR, PDF_BOLD = "NanumGothic", "NanumGothic-Bold"

_lock = threading.Lock()


class FontMissing(RuntimeError):
    pass


@lru_cache(maxsize=1)
def font_dir() -> Path:
    spec = importlib.util.find_spec(FONT_PACKAGE)  # locates without running the package
    if spec is None or not spec.submodule_search_locations:
        raise FontMissing(
            f"the Korean font package {FONT_PACKAGE!r} is not installed; run `make install` "
            "(it is a dependency of ctrops-reporter)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "fonts"
    for name in (REGULAR_FILE, BOLD_FILE):
        if not (folder / name).is_file():
            raise FontMissing(f"{folder / name} is missing; reinstall koreanize-matplotlib")
    return folder


def regular_path() -> Path:
    return font_dir() / REGULAR_FILE


def bold_path() -> Path:
    return font_dir() / BOLD_FILE


_pdf_registered = False


def register_pdf_fonts() -> tuple[str, str]:
    """Register the fonts with ReportLab once per process; returns (regular, bold) names."""
    global _pdf_registered
    with _lock:
        if not _pdf_registered:
            from reportlab.lib.fonts import addMapping
            from reportlab.pdfbase import pdfmetrics
            from reportlab.pdfbase.ttfonts import TTFont

            pdfmetrics.registerFont(TTFont(PDF_REGULAR, str(regular_path())))
            pdfmetrics.registerFont(TTFont(PDF_BOLD, str(bold_path())))
            addMapping(PDF_REGULAR, 0, 0, PDF_REGULAR)
            addMapping(PDF_REGULAR, 1, 0, PDF_BOLD)
            addMapping(PDF_REGULAR, 0, 1, PDF_REGULAR)
            addMapping(PDF_REGULAR, 1, 1, PDF_BOLD)
            _pdf_registered = True
    return PDF_REGULAR, PDF_BOLD


_chart_family: str | None = None


def chart_font_family() -> str:
    """Add the fonts to matplotlib's font manager once; returns the family name to use."""
    global _chart_family
    with _lock:
        if _chart_family is None:
            from matplotlib import font_manager

            font_manager.fontManager.addfont(str(regular_path()))
            font_manager.fontManager.addfont(str(bold_path()))
            _chart_family = font_manager.FontProperties(fname=str(regular_path())).get_name()
    return _chart_family
