import pytest

from kit.stages import scope


def _cfg(**kw):
    return scope.ScopeConfig(run_dir="/tmp/unused", use_case="t", **kw)


@pytest.mark.parametrize("kw, expected", [
    ({}, "fine-tune"),
    ({"facts_change_often": True}, "fine-tune + retrieval"),
    ({"repeated_language": False, "stable_rules": False, "clear_success_test": False,
      "new_hire_learns_from_examples": False, "facts_change_often": True}, "retrieval"),
    ({"labeled_examples": 20}, "prompting"),
])
def test_recommendation_on_clear_cases(kw, expected):
    assert scope.recommend(_cfg(**kw))[0] == expected


def test_costs_match_hand_computation():
    c = scope.costs(_cfg(requests_per_month=10000, prompt_tokens=1000, completion_tokens=10,
                         api_usd_per_million_input=1.0, api_usd_per_million_output=2.0, server_usd_per_hour=0.1,
                         serving_hours_per_month=100, training_runs_per_year=12, training_hours_per_run=1,
                         training_usd_per_hour=2.0, labeling_hours=12, labeling_usd_per_hour=10))
    # API: 10k * (1000 * 1 + 10 * 2) / 1e6 = 10.2; self-hosted: 10 serving + 2 training + 10 labeling = 22
    assert c["api_usd"] == 10.2
    assert c["self_hosted_usd"] == 22.0
    assert c["break_even_requests_per_month"] == round(22 / (10.2 / 10000))


def test_scorecard_widget_change_rewrites_scope_json(tmp_path):
    import json

    cfg = scope.ScopeConfig(run_dir=str(tmp_path), use_case="t")
    box = scope.scorecard_widget(cfg)
    facts = next(c for c in box.children if getattr(c, "description", "") == "facts change often")
    facts.value = True
    assert json.loads((tmp_path / "scope.json").read_text())["recommendation"] == "fine-tune + retrieval"
