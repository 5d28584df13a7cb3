"""The narrative against a real OpenAI-compatible HTTP server on localhost (not a patched client)."""

from __future__ import annotations

import time

import pytest

from ctrops_reporter.facts import gather
from ctrops_reporter.narrative import DETERMINISTIC_MODEL, write_narrative
from ctrops_reporter.report import build_report
from ctrops_reporter.settings import ReporterSettings


def _settings(fake_llm=None, **overrides) -> ReporterSettings:
    values = {"llm_model": "requested-model", "llm_timeout_s": 1.0, "llm_max_attempts": 2, "llm_backoff_s": 0.05,
              "openai_api_key": None}  # never a key from the environment: no test may reach a real API
    if fake_llm is not None:
        values |= {"openai_api_key": "test-key", "openai_base_url": fake_llm.base_url}
    return ReporterSettings(**(values | overrides))


@pytest.fixture
def facts(sample_run):
    return gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, sample_run.curve,
                  ReporterSettings())


def test_prompt_carries_the_runs_real_metrics_and_features_and_the_answer_is_used(fake_llm, facts):
    narrative = write_narrative(facts, _settings(fake_llm))

    (request,) = fake_llm.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer test-key"
    body = request["body"]
    assert body["model"] == "requested-model"
    assert body["response_format"] == {"type": "json_object"}
    prompt = "\n".join(m["content"] for m in body["messages"])
    for number in ("0.7386", "0.0874", "0.0921", "1.0731", "0.0812", "0.3478"):  # AUC AP logloss calib prec recall
        assert number in prompt, number
    for feature in ("history_a_1", "l_feat_14", "age_group"):
        assert feature in prompt
    assert '"p_value": 0.0009' in prompt and '"p_value": 0.004' in prompt
    assert "20시" in prompt  # a segment finding from profile.json
    assert "model_targeting" in prompt  # the candidate actions with their computed impact

    assert narrative.source == "llm" and narrative.model_used == fake_llm.MODEL
    assert narrative.summary == fake_llm.GOOD_SUMMARY
    assert [i.title for i in narrative.insights] == ["LLM 인사이트: 모델 변별력", "LLM 인사이트: 정확도 주의"]
    targeting = next(a for a in narrative.actions if a.id == "model_targeting")
    assert targeting.title == "LLM 과제: 모델 타겟팅" and targeting.duration == "3주"
    # the number stays computed: the conservative end of the revenue change range
    assert targeting.impact == round(facts.money.revenue_change_low_percent, 2)
    assert all(a.id != "invented_action" for a in narrative.actions)

    report = build_report(facts, narrative)
    assert report.model_used == fake_llm.MODEL and report.summary == fake_llm.GOOD_SUMMARY


def test_json_schema_mode_sends_the_schema(fake_llm, facts):
    write_narrative(facts, _settings(fake_llm, llm_response_format="json_schema"))
    response_format = fake_llm.requests[0]["body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert set(response_format["json_schema"]["schema"]["required"]) == {"summary", "insights", "actions"}


def test_malformed_answer_is_retried_then_falls_back_to_the_deterministic_narrative(fake_llm, facts):
    fake_llm.mode = "malformed"
    narrative = write_narrative(facts, _settings(fake_llm))
    assert len(fake_llm.requests) == 2  # llm_max_attempts
    assert narrative.source == "deterministic" and narrative.model_used == DETERMINISTIC_MODEL
    assert "0.739" in narrative.summary and "history_a_1" in narrative.summary
    assert narrative.fallback_reason and "ValidationError" in narrative.fallback_reason


def test_timeout_falls_back_to_the_deterministic_narrative(fake_llm, facts):
    fake_llm.mode, fake_llm.delay_s = "slow", 3.0
    started = time.monotonic()
    narrative = write_narrative(facts, _settings(fake_llm, llm_timeout_s=0.5))
    assert time.monotonic() - started < 2.9  # gave up on the slow server, did not wait for it
    assert len(fake_llm.requests) == 2
    assert narrative.source == "deterministic" and narrative.model_used == DETERMINISTIC_MODEL
    assert "Timeout" in (narrative.fallback_reason or "")


def test_without_a_key_no_request_is_made(fake_llm, facts, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    narrative = write_narrative(facts, _settings(openai_base_url=fake_llm.base_url))
    assert fake_llm.requests == []
    assert narrative.model_used == DETERMINISTIC_MODEL and narrative.fallback_reason is None


def test_bare_openai_env_names_are_accepted(monkeypatch, fake_llm):
    monkeypatch.setenv("OPENAI_API_KEY", "bare-key")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("CTROPS_LLM_MODEL", "from-env")
    settings = ReporterSettings()
    assert settings.openai_api_key.get_secret_value() == "bare-key"
    assert settings.openai_base_url == fake_llm.base_url and settings.llm_model == "from-env"


def test_deterministic_narrative_states_its_numbers_and_reports_missing_segments(sample_factory):
    run = sample_factory(with_profile=False)
    facts = gather(run.store, run.training_done, run.explanation_done, [], ReporterSettings())
    narrative = write_narrative(facts, _settings())
    titles = [i.title for i in narrative.insights]
    assert "세그먼트 데이터 없음" in titles
    assert not any("시간대" in t for t in titles)  # no invented segment findings
    # Neither the data's clicks nor the validation counts are known: the AUC's interval is unknown, so the
    # model is weak, and neither money nor a model-based action is claimed.
    assert facts.strength.verdict == "weak" and facts.strength.auc_ci_low is None
    assert narrative.actions == []
    assert "95% 신뢰구간 알 수 없음" in narrative.summary and "금액과 실행 과제는 싣지 않았습니다" in narrative.summary


def test_prompt_carries_directions_correlated_pairs_and_the_priority_rule(fake_llm, facts):
    write_narrative(facts, _settings(fake_llm))
    prompt = "\n".join(m["content"] for m in fake_llm.requests[0]["body"]["messages"])
    assert '"direction_ko": "21시, 20시, 22시에 클릭 증가"' in prompt and '"significant": true' in prompt
    assert '"auc_drop": 0.0412' in prompt and '"p_value_raw": 0.0001' in prompt
    assert '"drivers": [\n  "history_a_1",\n  "hour"' in prompt
    assert '"history_a_2"' in prompt and '"r": 0.82' in prompt and '"threshold": 0.3' in prompt
    assert "효과 크기 × 신뢰도" in prompt  # priority_rule
    from ctrops_reporter.narrative import SYSTEM_PROMPT
    assert "direction_ko" in SYSTEM_PROMPT and "correlation.pairs" in SYSTEM_PROMPT


def test_deterministic_narrative_names_drivers_with_their_direction_and_the_correlated_pairs(facts):
    narrative = write_narrative(facts, _settings())
    summary = narrative.summary
    assert "확인된 클릭 요인" in summary
    assert "history_a_1(과거 인기도 1) — 값이 클수록 클릭 증가" in summary
    assert "hour(시간대) — 21시, 20시, 22시에 클릭 증가" in summary
    assert "feat_a_3" not in summary  # adjusted p 0.21: not called a driver
    assert "가장 강한 쌍은 과거 인기도 1–과거 인기도 2 (r = +0.82)" in summary

    drivers = next(i for i in narrative.insights if i.title == "핵심 클릭 요인")
    assert drivers.details[0].startswith("history_a_1(과거 인기도 1): 값이 클수록 클릭 증가 (상위 25% CTR 3.40% vs "
                                         "하위 25% 0.90%), AUC 감소 0.0412 (95% CI 0.0310~0.0520), 보정 p<0.001")
    assert "검증에서 유의하지 않은 변수" in drivers.details[-1] and "feat_a_3" in drivers.details[-1]
    correlation = next(i for i in narrative.insights if i.title == "변수 간 상관관계")
    assert "|r| ≥ 0.3인 변수 쌍이 3개" in correlation.message
    assert correlation.details[0] == "과거 인기도 1(history_a_1) ↔ 과거 인기도 2(history_a_2): r = +0.82"
