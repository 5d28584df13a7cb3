"""The PDF: Korean headings and the run's real numbers in its text, options remove sections,
the Korean font is embedded, and the first page renders to an image with real glyphs."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from ctrops_reporter.facts import correlation_from, gather
from ctrops_reporter.narrative import write_narrative
from ctrops_reporter.pdf import HEADINGS, PdfInputs, PdfOptions, render_pdf
from ctrops_reporter.report import build_report
from ctrops_reporter.settings import ReporterSettings


@pytest.fixture
def inputs(sample_run) -> PdfInputs:
    settings = ReporterSettings(openai_api_key=None)
    facts = gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, sample_run.curve, settings)
    report = build_report(facts, write_narrative(facts, settings))
    return PdfInputs(report, sample_run.curve, correlation_from(sample_run.explanation))


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
def full_pdf(inputs) -> bytes:
    return render_pdf(inputs)


def test_text_has_korean_headings_and_the_runs_numbers(full_pdf, inputs, sample_run):
    assert full_pdf.startswith(b"%PDF-")
    text = _text(full_pdf)
    for heading in HEADINGS.values():
        assert heading in text, heading
    assert "CTR 예측 AI 마케팅 리포트" in text and "SK Planet AIOps" in text
    for number in ("97.91%", "0.7386", "0.0874", "0.0921", "1.073", "8.12%", "34.78%", "0.1317", "0.4813"):
        assert number in text, number
    assert "history_a_1" in text and "과거 인기도 1" in text
    low, high = inputs.report.money_range.additional_revenue_krw
    assert f"{low:+,.0f}원 ~ {high:+,.0f}원" in text  # money only as a range
    assert sample_run.run_id in text


def test_options_remove_their_sections(inputs):
    text = _text(render_pdf(inputs, PdfOptions(include_charts=False, include_insights=False,
                                               include_action_plan=False)))
    for kept in ("summary", "performance", "features", "correlation", "segments", "method"):
        assert HEADINGS[kept] in text
    for removed in ("curves", "feature_chart", "heatmap", "insights", "actions"):
        assert HEADINGS[removed] not in text, removed

    only_charts_off = _text(render_pdf(inputs, PdfOptions(include_charts=False)))
    assert HEADINGS["curves"] not in only_charts_off and HEADINGS["heatmap"] not in only_charts_off
    assert HEADINGS["insights"] in only_charts_off and HEADINGS["actions"] in only_charts_off


def test_korean_truetype_font_is_embedded(full_pdf):
    reader = PdfReader(io.BytesIO(full_pdf))
    embedded = set()
    for page in reader.pages:
        fonts = page.get("/Resources", {}).get("/Font", {})
        for ref in fonts.values():
            font = ref.get_object()
            for descendant in font.get("/DescendantFonts", [font]):
                descriptor = descendant.get_object().get("/FontDescriptor")
                if descriptor is not None and "/FontFile2" in descriptor.get_object():
                    embedded.add(str(font["/BaseFont"]))
    assert any("NanumGothic" in name for name in embedded), embedded


def test_every_character_of_the_text_has_a_glyph_in_the_font(full_pdf):
    """No tofu boxes: each character the PDF shows exists in NanumGothic's character map."""
    from fontTools.ttLib import TTFont

    from ctrops_reporter.fonts import bold_path, regular_path

    covered = set(TTFont(regular_path())["cmap"].getBestCmap()) & set(TTFont(bold_path())["cmap"].getBestCmap())
    shown = {ch for ch in _text(full_pdf) if not ch.isspace()}
    assert any("\uac00" <= ch <= "\ud7a3" for ch in shown)  # Hangul syllables are there
    assert {ch for ch in shown if ord(ch) not in covered} == set()


def test_first_page_renders_to_png_with_ink(full_pdf, tmp_path):
    """Rasterise the title page with PDFium (pip-installed, no system tools) and check what is drawn.

    The speed target (under 5 s) is measured by bench/reporter.py, not asserted here.
    """
    import numpy as np
    import pypdfium2

    document = pypdfium2.PdfDocument(full_pdf)
    image = document[0].render(scale=40 / 72).to_pil().convert("RGB")
    image.save(tmp_path / "page-1.png")  # kept for a person to look at when debugging
    title = np.asarray(image, dtype=float) / 255.0
    document.close()
    # The title page is the blue-to-purple gradient: blue dominates top-left, red rises towards bottom-right.
    top_left, bottom_right = title[5, 5], title[-5, -5]
    assert top_left[2] > 0.8 and bottom_right[0] > top_left[0]
    # White title text sits on it (glyphs drawn, not an empty band).
    assert (title[:, :, :3].min(axis=2) > 0.95).sum() > 200
