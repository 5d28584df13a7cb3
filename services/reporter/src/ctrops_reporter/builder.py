"""Build a run's report.json and PDF at their fixed paths, reusing what is already there.

One report per run: ``runs/<run_id>/report.json`` and ``runs/<run_id>/report.pdf`` (all
sections) or ``report-<flags>.pdf`` (other options). Files are written atomically.
report.json carries a digest of the inputs it was built from (the two events and the
feature-name mapping in effect), so it is rebuilt only when those change (a retrained run,
a newly uploaded mapping), and re-handling an event calls the LLM no second time. A PDF is reused while it is newer than report.json. Everything here is blocking:
callers run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pydantic import ValidationError

from ctrops_common.dataset import report_path, report_pdf_path as _report_pdf_path
from ctrops_common.documents import ReportDoc, read_document, write_document
from ctrops_common.events import ExplanationDone, TrainingDone
from ctrops_common.feature_names import FeatureNameMapping, effective_feature_names
from ctrops_common.storage import FileStore, UnsafePath, check_id

from .facts import correlation_from, gather, read_explanation
from .narrative import write_narrative
from .pdf import PdfInputs, PdfOptions, render_pdf
from .records import Records
from .report import build_report
from .settings import ReporterSettings

log = logging.getLogger(__name__)


class ReportNotReady(Exception):
    """The run lacks an input (training result or explanation); the message says which."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


report_json_path = report_path  # ctrops_common.dataset names every stored document's place


def report_pdf_path(run_id: str, options: PdfOptions) -> str:
    return _report_pdf_path(run_id, options.suffix)


def inputs_digest(training_done: TrainingDone, explanation_done: ExplanationDone,
                  names: FeatureNameMapping | None = None) -> str:
    inputs: list[Any] = [training_done.model_dump(mode="json"), explanation_done.model_dump(mode="json")]
    if names is not None:
        inputs.append(names.digest())
    canonical = json.dumps(inputs, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class ReportBuilder:
    def __init__(self, store: FileStore, records: Records, settings: ReporterSettings) -> None:
        self.store = store
        self.records = records
        self.settings = settings

    def _inputs(self, run_id: str) -> tuple[TrainingDone, ExplanationDone]:
        try:
            check_id(run_id)
        except UnsafePath:
            raise ReportNotReady(f"invalid run id {run_id!r}", retryable=False) from None
        training, explanation = self.records.inputs(run_id)
        if training is None:
            raise ReportNotReady(
                f"run {run_id}: training has not completed (no training.done received), so there is no report yet"
            )
        if explanation is None:
            raise ReportNotReady(
                f"run {run_id}: the explanation is not ready yet (no explanation.done received); try again shortly"
            )
        return training, explanation

    def ensure_report(self, run_id: str) -> ReportDoc:
        """report.json of the run: reused when built from the same inputs, built (LLM or rules) otherwise."""
        training, explanation = self._inputs(run_id)
        digest = inputs_digest(training, explanation, effective_feature_names(self.store))
        path = report_json_path(run_id)
        if self.store.exists(path):
            try:
                existing = read_document(self.store, path, ReportDoc)
                if existing.inputs_digest == digest:
                    return existing
            except (OSError, ValueError, ValidationError) as exc:  # ValidationError: an older schema
                log.warning("rebuilding unreadable %s: %s", path, exc)
        facts = gather(self.store, training, explanation, self.records.curve(run_id), self.settings)
        report = build_report(facts, write_narrative(facts, self.settings), digest)
        write_document(self.store, path, report)
        log.info("report.json for %s written by %s", run_id, report.model_used)
        return report

    def ensure_pdf(self, run_id: str, options: PdfOptions, report: ReportDoc) -> tuple[str, bool]:
        """(PDF path, reused?) for these options; rendered only when missing or older than report.json."""
        pdf = report_pdf_path(run_id, options)
        json_path = self.store.path(report_json_path(run_id))
        pdf_file = self.store.path(pdf)
        if pdf_file.exists() and json_path.exists() and pdf_file.stat().st_mtime_ns >= json_path.stat().st_mtime_ns:
            return pdf, True
        _, explanation = self._inputs(run_id)
        correlation = None
        try:
            correlation = correlation_from(read_explanation(self.store, explanation.location),
                                           effective_feature_names(self.store))
        except UnsafePath as exc:
            log.info("no correlation matrix for %s: %s", run_id, exc)
        data = render_pdf(PdfInputs(report, self.records.curve(run_id), correlation), options)
        self.store.write_bytes(pdf, data)
        return pdf, False

    def build(self, run_id: str, options: PdfOptions = PdfOptions()) -> tuple[ReportDoc, str, bool]:
        report = self.ensure_report(run_id)
        pdf, reused = self.ensure_pdf(run_id, options, report)
        return report, pdf, reused
