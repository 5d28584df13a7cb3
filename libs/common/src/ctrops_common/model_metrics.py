"""``ModelMetrics``: the one set of model numbers, from the trainer to the monitor, the gateway and the report.

Every field carries what its readers need to show it (``Metric``): a label (Korean for the report,
English for Prometheus), which direction is better, its unit, the name the frontend contract gives
it where that differs (``val_accuracy`` is the contract's ``accuracy``, ``f1`` its ``f1_score``),
the monitor's gauge for the latest finished run, whether it is exported per epoch, and whether the
report's table shows it. The readers iterate the fields (``ModelMetrics.described()``) instead of
keeping their own lists, so adding a metric is one field here:

- the trainer fills it (``validation_metrics`` returns this model's field names; an unknown name
  is an error, not a metric that silently disappears: the model forbids extra fields);
- the monitor's gauges are the fields with a ``gauge`` (latest run) or ``epoch=True`` (per epoch);
- the gateway sends ``both_spellings()`` in the WebSocket ``epoch_update``, the training status and
  ``/api/performance``;
- the report's table lists the fields with ``report=True``, labelled and explained from here.

On the wire (events) each field is written once, by its own name. ``both_spellings()`` is the one
serializer of the frontend's spellings: the name, its camelCase twin and the contract's name with
its camelCase twin. Reading accepts any of those spellings (stored reports and snapshots written
before this model) and refuses copies that disagree.
"""

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema

from .numbers import finite as _finite

__all__ = ["Direction", "Metric", "ModelMetrics", "Unit", "spellings"]

Direction = Literal["higher", "lower", "near_one", "none"]
Unit = Literal["ratio", "nats", "probability", "score", "seconds", "rows_per_s"]


@dataclass(frozen=True)
class Metric:
    """What a reader needs to show one metric."""

    label: str  # Korean, for the report
    label_en: str  # English, for gauges and logs
    direction: Direction  # which way is better ("near_one": 1.0 is ideal)
    unit: Unit
    meaning: str = ""  # one Korean line for the report's table
    contract: str | None = None  # the frontend contract's name when it differs from the field's
    gauge: str | None = None  # Prometheus gauge of the latest finished run (None: not exported)
    epoch: bool = False  # exported per epoch (ctrops_training_epoch_loss / _quality_ratio, by unit)
    report: bool = False  # a row of the report's metric table
    percent: bool = False  # the report shows it as a percentage
    digits: int = 4  # decimals in the report

    @property
    def gauge_help(self) -> str:
        return f"{self.label_en} of the latest finished run ({UNIT_TEXT[self.unit]}; {DIRECTION_TEXT[self.direction]})"

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        """The field's schema says what it is: description, label, direction, unit, contract name."""
        out = dict(handler(schema))
        out["description"] = f"{self.label_en} ({UNIT_TEXT[self.unit]}; {DIRECTION_TEXT[self.direction]})"
        out.update({"x-label": self.label, "x-direction": self.direction, "x-unit": self.unit})
        if self.contract:
            out["x-contract"] = self.contract
        return out


UNIT_TEXT = {"ratio": "0..1", "nats": "nats per example", "probability": "probability 0..1", "score": "score",
             "seconds": "seconds", "rows_per_s": "rows per second"}
DIRECTION_TEXT = {"higher": "higher is better", "lower": "lower is better", "near_one": "1 is ideal",
                  "none": "neither better nor worse"}
EPOCH_UNITS = ("nats", "ratio")  # the two per-epoch gauges


def info_of(field: FieldInfo) -> Metric:
    found = next((m for m in field.metadata if isinstance(m, Metric)), None)
    if found is None:
        raise TypeError("every ModelMetrics field is declared Annotated[float | None, Metric(...)]")
    if found.epoch and found.unit not in EPOCH_UNITS:
        raise ValueError(f"{found.label_en}: per-epoch gauges exist for {EPOCH_UNITS}, not {found.unit!r}")
    return found


def spellings(name: str, info: Metric) -> list[str]:
    """Every key the frontend reads this metric under: the name, camelCase, the contract's name and its camelCase."""
    names = [name, to_camel(name)]
    if info.contract:
        names += [info.contract, to_camel(info.contract)]
    return list(dict.fromkeys(names))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


class ModelMetrics(BaseModel):
    """A model's numbers on the validation rows (original click rate, not the down-sampled one), plus the
    epoch's training loss/accuracy and speed. Every field is optional: a GBDT has no training-batch pass,
    AUC and AP need both classes, an older event may lack a newer metric."""

    model_config = ConfigDict(extra="forbid")

    val_accuracy: Annotated[float | None, Metric(
        "정확도 (Accuracy)", "Validation accuracy", "higher", "ratio", contract="accuracy",
        gauge="ctrops_model_accuracy_ratio", epoch=True, report=True, percent=True,
        meaning="0.5 기준으로 맞힌 비율. 클릭이 드물어 평가에 쓰지 않음")] = None
    precision: Annotated[float | None, Metric(
        "정밀도 (Precision)", "Validation precision at the run's threshold", "higher", "ratio",
        gauge="ctrops_model_precision_ratio", report=True, percent=True, meaning="클릭 예측 중 실제 클릭 비율")] = None
    recall: Annotated[float | None, Metric(
        "재현율 (Recall)", "Validation recall at the run's threshold", "higher", "ratio",
        gauge="ctrops_model_recall_ratio", report=True, percent=True, meaning="실제 클릭 중 찾아낸 비율")] = None
    f1: Annotated[float | None, Metric(
        "F1", "Validation F1 score at the run's threshold", "higher", "ratio", contract="f1_score",
        gauge="ctrops_model_f1_ratio", report=True, meaning="정밀도와 재현율의 조화평균")] = None
    auc: Annotated[float | None, Metric(
        "ROC AUC", "Validation ROC AUC (0.5 = chance)", "higher", "ratio", gauge="ctrops_model_roc_auc_ratio",
        epoch=True, report=True, meaning="클릭/비클릭 순위 구분력 (0.5 = 무작위)")] = None
    ap: Annotated[float | None, Metric(
        "평균 정밀도 (AP)", "Validation average precision, area under the PR curve", "higher", "ratio",
        gauge="ctrops_model_average_precision_ratio", epoch=True, report=True,
        meaning="정밀도-재현율 곡선 아래 넓이 (무작위 기준 = 클릭률)")] = None
    logloss: Annotated[float | None, Metric(
        "로그 손실 (Log loss)", "Validation log loss", "lower", "nats", gauge="ctrops_model_log_loss", epoch=True,
        report=True, meaning="예측 확률의 정확도 (낮을수록 좋음)")] = None
    calibration: Annotated[float | None, Metric(
        "보정 비율 (Calibration)", "Predicted / actual clicks on validation", "near_one", "ratio",
        gauge="ctrops_model_calibration_ratio", report=True, digits=3,
        meaning="예측 클릭 수 / 실제 클릭 수 (1이 이상적)")] = None
    score: Annotated[float | None, Metric(
        "대회 점수", "Model-selection score 0.5*AP + 0.5/(1+WLL)", "higher", "score", gauge="ctrops_model_score",
        report=True, meaning="0.5·AP + 0.5/(1+WLL)")] = None
    threshold: Annotated[float | None, Metric(
        "판정 임계값", "Decision threshold (maximises validation F1)", "none", "probability", report=True,
        meaning="정확도·정밀도·재현율·F1의 기준 확률")] = None
    train_loss: Annotated[float | None, Metric(
        "학습 손실", "Training loss (down-sampled batches)", "lower", "nats", epoch=True)] = None
    val_loss: Annotated[float | None, Metric("검증 손실", "Validation loss", "lower", "nats", epoch=True)] = None
    train_accuracy: Annotated[float | None, Metric(
        "학습 정확도", "Training accuracy (down-sampled batches)", "higher", "ratio", epoch=True)] = None
    seconds: Annotated[float | None, Metric("에폭 시간", "Epoch wall time", "none", "seconds")] = None
    samples_per_s: Annotated[float | None, Metric("학습 속도", "Training rows per second", "higher", "rows_per_s")] = None

    @classmethod
    def described(cls) -> dict[str, Metric]:
        """Field name -> its Metric, in declaration order (the report's row order)."""
        return {name: info_of(field) for name, field in cls.model_fields.items()}

    @model_validator(mode="before")
    @classmethod
    def _fold_spellings(cls, data: Any) -> Any:
        """Accept the frontend's spellings (valAccuracy, accuracy, f1_score, ...) as the field; copies must agree."""
        if not isinstance(data, dict):
            return data
        folded: dict[str, Any] = {}
        by_spelling = _spelling_map(cls)
        for key, value in data.items():
            name = by_spelling.get(key, key)
            if name in folded and not _same(folded[name], value):
                raise ValueError(f"{key!r} ({value!r}) differs from another spelling of {name!r} ({folded[name]!r})")
            folded[name] = value
        return folded

    def values(self) -> dict[str, float | None]:
        """Every metric by field name; NaN and infinities as None (JSON cannot carry them)."""
        return {name: _finite(getattr(self, name)) for name in type(self).model_fields}

    def both_spellings(self) -> dict[str, float | None]:
        """The frontend's view: every metric under every spelling it reads (finite or None)."""
        out: dict[str, float | None] = {}
        for name, info in type(self).described().items():
            value = _finite(getattr(self, name))
            for key in spellings(name, info):
                out[key] = value
        return out


_SPELLINGS: dict[tuple[type, tuple[str, ...]], dict[str, str]] = {}


def _spelling_map(cls: type[ModelMetrics]) -> dict[str, str]:
    """Spelling -> field name, cached per set of fields (a test may add one)."""
    key = (cls, tuple(cls.model_fields))
    if key not in _SPELLINGS:
        _SPELLINGS[key] = {s: name for name, info in cls.described().items() for s in spellings(name, info)}
    return _SPELLINGS[key]
