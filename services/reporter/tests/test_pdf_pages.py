"""Every page of a full report, rendered to PNG and read back as text: nothing blank, nothing cut off.

Two realistic reports (a usable model with drivers and correlated pairs, and a file with no
signal: weak verdict, no driver, no pair above the threshold), each rendered by poppler
(``pdftoppm -png -r 50``, one PNG per page) and read back with ``pdftotext``: every page has
ink, every word's box lies inside the page (inside the text frame on the pages after the
cover), the story's section headings appear as lines in the story's order, and the
summary, the insights and the actions come back whole. Poppler is a system tool
(``make tools`` installs poppler-utils); without it the test fails and says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from ctrops_common.documents import Explanation, write_document
from ctrops_common.events import ModelMetrics
from ctrops_common.feature_names import parse_mapping_csv, save_override
from ctrops_reporter.facts import correlation_from, gather
from ctrops_reporter.narrative import write_narrative
from ctrops_reporter.pdf import HEADINGS, PdfInputs, PdfOptions, render_pdf
from ctrops_reporter.report import build_report
from ctrops_reporter.settings import ReporterSettings

MM = 72 / 25.4
PAGE_MARGIN = 8.0  # points: no word may come closer to the paper's edge (the footer sits at 10 mm)
FRAME_LEFT = FRAME_RIGHT = 18 * MM  # the story's frame (pdf.py: SimpleDocTemplate margins)
FRAME_SLACK = 1.5  # points of rounding between ReportLab's layout and poppler's word boxes
LONG_EXPERIMENT = ("CTR_Experiment_2025_봄_리타게팅_캠페인_모바일_앱_설치_사용자_대상_주말_저녁_시간대_"
                   "광고_세트_비교_실험_두번째_반복_학습_재현성_점검용_긴_이름")
WEAK_METRICS = {"train_loss": 0.69, "val_loss": 0.093, "val_accuracy": 0.9817, "auc": 0.512, "ap": 0.0193,
                "logloss": 0.093, "calibration": 1.4, "score": 0.31, "precision": 0.019, "recall": 0.3,
                "f1": 0.035, "threshold": 0.02}


def _poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: install poppler-utils (apt-get install poppler-utils; `make tools` does it)")
    return path


def _usable_report(run) -> tuple[bytes, dict]:
    """The conftest run (drivers, segments, correlated pairs, money) under a long experiment name and a
    user's feature-name mapping with a long Korean name: the worst case for the cover and the tables."""
    save_override(run.store, parse_mapping_csv(
        "column,name,group\nhistory_a_1,최근 30일 동안 같은 광고 세트에 반응한 사용자 비율의 과거 인기도,과거 이력\n".encode()))
    settings = ReporterSettings(openai_api_key=None)
    training = run.training_done.model_copy(update={"experiment_name": LONG_EXPERIMENT})
    facts = gather(run.store, training, run.explanation_done, run.curve, settings)
    report = build_report(facts, write_narrative(facts, settings))
    correlation = correlation_from(run.explanation, None)
    return render_pdf(PdfInputs(report, run.curve, correlation)), report.model_dump(mode="json")


def _no_signal_report(run) -> tuple[bytes, dict]:
    """A file without signal: every feature unsupported, correlations near zero, a weak model."""
    explanation = run.explanation.model_dump(mode="json")
    for feature in explanation["features"]:
        feature.update(p_value=0.81, pValue=0.81, p_value_raw=0.42, significant=False, auc_drop=0.0,
                       auc_drop_ci=[-0.001, 0.001], direction_ko="두드러지는 값 없음",
                       effect={"kind": "none", "text": "no value stands out", "text_ko": "두드러지는 값 없음"})
    block = explanation["correlation"]
    block["matrix"] = [[1.0 if i == j else 0.01 for j in range(len(block["features"]))]
                       for i in range(len(block["features"]))]
    block.update(pairs=[], max_abs_off_diagonal=0.01, pairs_note="no pair of the 118 features has |r| >= 0.3")
    explanation = Explanation.model_validate(explanation)
    write_document(run.store, run.explanation_location, explanation)
    settings = ReporterSettings(openai_api_key=None)
    done = run.training_done.model_copy(update={"metrics": ModelMetrics(**WEAK_METRICS)})
    facts = gather(run.store, done, run.explanation_done, run.curve, settings)
    report = build_report(facts, write_narrative(facts, settings))
    return render_pdf(PdfInputs(report, run.curve, correlation_from(explanation, None))), report.model_dump(mode="json")


def _page_texts(pdf: Path, pages: int) -> list[str]:
    tool = _poppler("pdftotext")
    return [subprocess.run([tool, "-enc", "UTF-8", "-f", str(n), "-l", str(n), str(pdf), "-"], check=True,
                           capture_output=True, text=True, timeout=60).stdout for n in range(1, pages + 1)]


def _word_boxes(pdf: Path) -> list[tuple[float, float, list[tuple[str, float, float, float, float]]]]:
    """Per page: (width, height, [(word, xMin, yMin, xMax, yMax)]) from ``pdftotext -bbox``."""
    out = subprocess.run([_poppler("pdftotext"), "-enc", "UTF-8", "-bbox", str(pdf), "-"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", out).replace(' xmlns="http://www.w3.org/1999/xhtml"', ""))
    pages = []
    for page in root.iter("page"):
        words = [(w.text or "", *(float(w.get(k)) for k in ("xMin", "yMin", "xMax", "yMax"))) for w in page.iter("word")]
        pages.append((float(page.get("width")), float(page.get("height")), words))
    return pages


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("variant", ["usable", "no_signal"])
def test_every_page_renders_and_no_text_is_cut_off(sample_run, tmp_path, variant):
    pdf_bytes, report = (_usable_report if variant == "usable" else _no_signal_report)(sample_run)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(pdf_bytes)

    # -- every page as a PNG with ink on it
    subprocess.run([_poppler("pdftoppm"), "-png", "-r", "50", str(pdf), str(tmp_path / "page")], check=True,
                   timeout=120)
    pngs = sorted(tmp_path.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    boxes = _word_boxes(pdf)
    assert len(pngs) == len(boxes) >= 6, (len(pngs), len(boxes))
    for number, png in enumerate(pngs, 1):
        image = Image.open(png).convert("L")
        assert abs(image.size[0] - 413) <= 1 and abs(image.size[1] - 585) <= 1, (png.name, image.size)  # A4, 50 dpi
        dark = sum(image.histogram()[:200])  # pixels clearly darker than the paper
        assert dark > 0.005 * image.size[0] * image.size[1], f"page {number} is (nearly) blank: {dark} dark pixels"

    # -- every word inside the paper, and inside the text frame after the cover
    for number, (width, height, words) in enumerate(boxes, 1):
        assert words, f"page {number} has no text"
        for word, x0, y0, x1, y1 in words:
            assert PAGE_MARGIN <= x0 and x1 <= width - PAGE_MARGIN, f"page {number}: {word!r} at x {x0:.0f}-{x1:.0f}"
            assert PAGE_MARGIN <= y0 and y1 <= height - PAGE_MARGIN, f"page {number}: {word!r} at y {y0:.0f}-{y1:.0f}"
            if number > 1:
                assert FRAME_LEFT - FRAME_SLACK <= x0 and x1 <= width - FRAME_RIGHT + FRAME_SLACK, (
                    f"page {number}: {word!r} leaves the text frame (x {x0:.1f}-{x1:.1f} of {width:.0f})")

    # -- the story's headings, each a line of its own, in the story's order
    texts = _page_texts(pdf, len(boxes))
    found = []
    for key, heading in HEADINGS.items():
        where = [(page, index) for page, text in enumerate(texts, 1)
                 for index, line in enumerate(text.splitlines()) if line.strip() == heading]
        assert where, f"heading {heading!r} ({key}) is on no page"
        found.append((where[0], heading))
    assert found == sorted(found), f"headings out of order: {found}"

    # -- the words of the story come back whole (nothing clipped, nothing lost between pages)
    everything = _squash("".join(texts))
    assert _squash(report["summary"]) in everything
    for insight in report["aiInsights"]:
        for text in (insight["title"], insight["message"], *insight["details"], insight["action"]):
            assert _squash(text) in everything, text[:80]
    for action in report["actionPlan"]:
        assert _squash(action["title"]) in everything and _squash(action["description"]) in everything
    cover = _squash(texts[0])
    assert "CTR예측AI마케팅리포트" in cover and "모델신뢰도:" in cover

    if variant == "usable":
        assert "최근30일동안같은광고세트에반응한사용자비율의과거인기도" in everything  # the user's long name
        assert "실험:CTR_Experiment_2025_봄" in cover and "…" in texts[0]  # fitted to the cover, not run off it
        assert "과거인기도1(history_a_1)과거인기도2(history_a_2)+0.82" in everything  # the top correlated pair
        assert "21시,20시,22시에클릭증가" in everything  # a driver's direction, in Korean
    else:
        assert "|r|≥0.3인쌍은없습니다" in everything and "히트맵을생략했습니다" in everything
        assert "검증데이터에서클릭신호가확인된변수는없습니다" in everything
        assert report["modelStrength"]["verdict"] == "weak" and "추정하지않음" in everything


def test_without_charts_the_remaining_headings_keep_their_order(sample_run, tmp_path):
    pdf_bytes, _ = _usable_report(sample_run)
    settings = ReporterSettings(openai_api_key=None)
    facts = gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, sample_run.curve, settings)
    report = build_report(facts, write_narrative(facts, settings))
    pdf = tmp_path / "plain.pdf"
    pdf.write_bytes(render_pdf(PdfInputs(report, sample_run.curve, facts.correlation), PdfOptions(include_charts=False)))
    texts = _page_texts(pdf, len(_word_boxes(pdf)))
    lines = [(page, index, line.strip()) for page, text in enumerate(texts) for index, line in enumerate(text.splitlines())]
    shown = [line for _, _, line in lines if line in HEADINGS.values()]
    expected = [h for k, h in HEADINGS.items() if k not in ("curves", "feature_chart", "heatmap")]
    assert [h for h in shown if h in expected] == expected
