"""Stage 06's statistics by hand, its thresholds and decision, and the adapter registry (promote, roll back, erase).

The registry tests use real files laid out as stages 03 and 05 write them (the registry copies and hashes them; it
never loads a model). The whole stage on the real embedded model runs in the smoke course (test_notebooks.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kit import adapters, stats
from kit.stages import monitor
from kit.tasks.base import Task

TH = monitor.Thresholds()


# ---------------------------------------------------------------- statistics against hand computation

def test_psi_by_hand():
    # 0.3·ln(0.8/0.5) + (−0.3)·ln(0.2/0.5)
    expected = 0.3 * math.log(1.6) - 0.3 * math.log(0.4)
    assert stats.psi({"a": 0.5, "b": 0.5}, {"a": 0.8, "b": 0.2}) == pytest.approx(expected)
    assert stats.psi({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    # a category the baseline never had counts through the floor instead of dividing by zero
    assert stats.psi({"a": 1.0}, {"a": 0.5, "b": 0.5}) > 2


def test_chi_square_by_hand():
    r = stats.chi_square({"a": 0.5, "b": 0.5}, ["a"] * 8 + ["b"] * 2)
    assert r["statistic"] == pytest.approx((3 ** 2 + 3 ** 2) / 5)  # expected 5 and 5, observed 8 and 2
    assert r["p_value"] == pytest.approx(math.erfc(math.sqrt(3.6 / 2)))  # χ² with 1 degree of freedom


def test_wilson_interval_by_hand():
    k, n, z = 8, 10, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats.wilson(k, n) == pytest.approx([centre - half, centre + half], abs=1e-9)


def test_oov_rate_and_words():
    assert stats.words("Hi <PERSON_1>, my DriveSafe box-set isn't 3 days old") == \
        ["hi", "my", "drivesafe", "box-set", "isn't", "days", "old"]
    assert stats.oov_rate([["a", "b", "c", "d"]], {"a", "b"}) == 0.5
    assert stats.oov_rate([], {"a"}) == 0.0


def test_new_terms_thresholds():
    train = [["claim", "status"]] * 99 + [["claim", "rare"]]  # "rare" in 1% of training texts
    batch = [["drivesafe", "claim"]] * 6 + [["claim", "rare"]] * 6 + [["claim"]] * 88
    terms = stats.new_terms(batch, train, TH)
    assert [t["term"] for t in terms] == ["drivesafe"]  # 6% of the batch, 0% of training; "rare" is in 1% of training
    assert terms[0] == {"term": "drivesafe", "batch_share": 0.06, "train_share": 0.0}
    # under the 5% share (4 of 100) it is not reported
    assert stats.new_terms([["drivesafe"]] * 4 + [["claim"]] * 96, train, TH) == []
    # a small batch needs the term in at least new_term_min_rows texts, not just 5%
    assert stats.new_terms([["drivesafe"]] * 3 + [["claim"]] * 7, train, TH) == []


def test_ks_statistic():
    r = stats.ks([1, 2, 3], [4, 5, 6])
    assert r["statistic"] == 1.0
    assert stats.ks([1, 2, 3], [1, 2, 3])["statistic"] == 0.0


def test_population_auc_alike_and_apart():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(60)]
    texts = [" ".join(rng.choice(vocab, 12)) for _ in range(400)]
    alike = stats.population_auc(texts[:200], texts[200:])
    assert abs(alike["statistic"] - 0.5) < 0.1 and alike["p_value"] > 0.01
    moved = [t + " drivesafe tracker" for t in texts[200:]]
    apart = stats.population_auc(texts[:200], moved)
    assert apart["statistic"] > 0.95 and apart["p_value"] < 1e-6
    assert set(stats.most_telling_terms(texts[:200], moved)[:2]) == {"drivesafe", "tracker"}


# ---------------------------------------------------------------- quality, overrides and the decision

LABELS = ("claim_status", "billing_dispute", "agent_escalation")
TASK = Task(LABELS, "Route it.", "classify")
BASE = {"accuracy": 0.95, "accuracy_ci95": [0.9, 0.98]}


def _rows(n_ok: int, n_wrong: int, predicted: str = "billing_dispute", corrected: str = "agent_escalation"):
    ok = [{"prediction": predicted, "review": predicted, "outcome": "accepted"} for _ in range(n_ok)]
    wrong = [{"prediction": predicted, "review": corrected, "outcome": "overridden"} for _ in range(n_wrong)]
    return ok + wrong + [{"prediction": "claim_status", "review": None, "outcome": None}] * 10


def test_quality_drop_alerts_and_names_the_repair_target():
    q = monitor.quality_checks(TASK, BASE, _rows(28, 12), TH)
    quality, overrides = q["checks"]
    assert quality["statistic"] == pytest.approx(0.7) and quality["verdict"] == "alert"
    assert quality["ci95"] == pytest.approx(stats.wilson(28, 40))
    assert quality["ci95"][1] < BASE["accuracy"]
    assert q["reviewed"] == {"n": 40, "share": 0.8}
    assert overrides["verdict"] == "alert" and overrides["targets"] == ["billing_dispute"]
    row = q["overrides_by_label"]["billing_dispute"]
    assert {k: row[k] for k in ("reviewed", "overridden", "rate", "corrected_to")} == \
        {"reviewed": 40, "overridden": 12, "rate": 0.3, "corrected_to": {"agent_escalation": 12}}
    # 12 of 40 at the holdout's 5% error rate: P(X ≥ 12) for X ~ Binomial(40, 0.05)
    expected = sum(math.comb(40, k) * 0.05 ** k * 0.95 ** (40 - k) for k in range(12, 41))
    assert row["p_value"] == pytest.approx(expected)


def test_overrides_at_the_holdouts_own_error_rate_are_not_a_repair_target():
    # a weaker model (holdout 84%) overridden 3 times in 9: frequent, but what its error rate predicts
    weak = {"accuracy": 0.84, "accuracy_ci95": [0.7, 0.93]}
    q = monitor.quality_checks(TASK, weak, _rows(6, 3), TH)
    assert q["overrides_by_label"]["billing_dispute"]["rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert q["checks"][1]["verdict"] == "ok"
    # 7 of 10 is not
    assert monitor.quality_checks(TASK, weak, _rows(3, 7), TH)["checks"][1]["verdict"] == "alert"


def test_quality_within_reach_of_the_holdout_does_not_alert():
    quality, overrides = monitor.quality_checks(TASK, BASE, _rows(38, 2), TH)["checks"]
    assert quality["statistic"] == pytest.approx(0.95) and quality["verdict"] == "ok"
    assert overrides["verdict"] == "ok"  # 2 overrides: under override_min


def test_quality_drop_inside_the_interval_does_not_alert():
    # 0.88 is 7 points under 0.95, but with 25 reviews the interval still reaches 0.95: not judged a drop
    quality = monitor.quality_checks(TASK, BASE, _rows(22, 3), TH)["checks"][0]
    assert quality["statistic"] == pytest.approx(0.88) and quality["ci95"][1] >= 0.95
    assert quality["verdict"] == "ok"


def test_too_few_reviews_are_reported_not_judged():
    quality = monitor.quality_checks(TASK, BASE, _rows(5, 10), TH)["checks"][0]
    assert quality["verdict"] == "ok" and "min_reviewed" in quality["note"]


def test_decision_rules():
    alert = lambda name: {"check": name, "verdict": "alert", "message": "m"}  # noqa: E731
    assert monitor.decide([])[0] == "keep"
    assert monitor.decide([alert("population"), alert("new_terms")])[0] == "retrain"
    assert monitor.decide([alert("overrides")])[0] == "retrain"
    assert monitor.decide([alert("population"), alert("quality")])[0] == "roll back"


def test_label_mix_check_by_hand():
    base = {"predictions": ["claim_status"] * 50 + ["billing_dispute"] * 50, "confidences": [0.9] * 100}
    rows = [{"prediction": "claim_status", "confidence": 0.9}] * 20 + \
           [{"prediction": "billing_dispute", "confidence": 0.5}] * 80
    mix, conf = monitor.output_checks(TASK, base, rows, TH)
    assert mix["statistic"] == pytest.approx(round(0.3 * math.log(0.8 / 0.5) - 0.3 * math.log(0.2 / 0.5), 4))
    assert mix["verdict"] == "alert" and mix["batch_shares"]["billing_dispute"] == 0.8
    assert conf["statistic"] == pytest.approx(0.8) and conf["verdict"] == "alert"
    steady = monitor.output_checks(TASK, base, [{"prediction": p, "confidence": 0.9} for p in base["predictions"]], TH)
    assert [c["verdict"] for c in steady] == ["ok", "ok"]


def test_thresholds_from_a_dict_and_unknown_names(tmp_path):
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"body": "x"}\n')
    cfg = monitor.MonitorConfig(run_dir=str(tmp_path), batch_path=str(batch), thresholds={"population_auc": 0.8})
    assert cfg.thresholds.population_auc == 0.8 and cfg.name == "b"
    with pytest.raises(monitor.MonitorError, match="unknown threshold.*population_aux"):
        monitor.MonitorConfig(run_dir=str(tmp_path), batch_path=str(batch), thresholds={"population_aux": 0.8})
    with pytest.raises(monitor.MonitorError, match="does not exist"):
        monitor.MonitorConfig(run_dir=str(tmp_path), batch_path=str(tmp_path / "missing.csv"))


def test_production_batches_are_what_the_samples_hold(tmp_path):
    from tools import synth

    synth.write_production_batches(tmp_path)
    repo = Path(__file__).resolve().parent.parent / "data_samples" / "production"
    for name in ("week1.jsonl", "week2_launch.jsonl"):
        assert (tmp_path / "production" / name).read_text() == (repo / name).read_text(), name
    launch = [json.loads(x) for x in (repo / "week2_launch.jsonl").read_text().splitlines()]
    quiet = [json.loads(x) for x in (repo / "week1.jsonl").read_text().splitlines()]
    assert not any("DriveSafe" in r["body"] for r in quiet)
    tagged = [r for r in launch if "DriveSafe" in r["body"]]
    assert 0.35 < len(tagged) / len(launch) < 0.55
    assert all(r["reviewed_label"] in ("", "agent_escalation") for r in tagged)
    assert all("label" not in r for r in launch + quiet)  # production traffic carries no answer


# ---------------------------------------------------------------- the registry

def fake_release(root: Path, name: str, weights: bytes, verified: bool = True, accuracy: float = 0.9) -> Path:
    """A run directory as stages 03-05 leave it: adapter files, metrics, a Modelfile beside its GGUF, parity."""
    run = root / name
    adapter = run / "adapters" / "default"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    (adapter / "kit_adapter.json").write_text(json.dumps({"base_model": "embedded:gemma3-270m"}))
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps(
        {"task": "classify", "models": {"tuned": {"accuracy": accuracy, "accuracy_ci95": [0.8, 0.95]}}}))
    (run / "export").mkdir()
    (run / "export" / "model-q8_0.gguf").write_bytes(b"GGUF" + weights)
    (run / "export" / "Modelfile").write_text('FROM ./model-q8_0.gguf\n\nTEMPLATE """{{ .Prompt }}"""\n')
    (run / "export" / "parity.json").write_text(json.dumps({"verified": verified, "types": {}}))
    return run


def test_promote_versions_and_same_weights_are_one_version(tmp_path):
    reg = tmp_path / "registry"
    r1, r2 = fake_release(tmp_path, "jan", b"one"), fake_release(tmp_path, "feb", b"two", accuracy=0.93)
    v1 = adapters.promote(reg, "acme", r1, "default", "January release")
    v2 = adapters.promote(reg, "acme", r2, "default", "February release")
    assert (v1["version"], v2["version"]) == ("v1", "v2")
    assert adapters.live(reg, "acme")["version"] == "v2"
    assert (reg / "acme" / "v1" / "adapter_model.safetensors").read_bytes() == b"one"
    assert json.loads((reg / "acme" / "v2" / "release.json").read_text())["holdout"]["accuracy"] == 0.93
    assert (reg / "acme" / "Modelfile").read_text().startswith(f"FROM {r2 / 'export' / 'model-q8_0.gguf'}\n")
    again = adapters.promote(reg, "acme", r1, "default", "January again")  # the same weights: no new version
    assert again["version"] == "v1" and len(adapters.load(reg, "acme")["versions"]) == 2
    history = adapters.load(reg, "acme")["history"]
    assert [(h["action"], h["version"], h["from"]) for h in history] == \
        [("promote", "v1", None), ("promote", "v2", "v1"), ("promote", "v1", "v2")]


def test_unverified_export_and_missing_reason_are_refused(tmp_path):
    reg = tmp_path / "registry"
    bad = fake_release(tmp_path, "bad", b"x", verified=False)
    with pytest.raises(adapters.RegistryError, match="failed its parity check"):
        adapters.promote(reg, "acme", bad, "default", "try")
    good = fake_release(tmp_path, "good", b"y")
    with pytest.raises(adapters.RegistryError, match="needs a reason"):
        adapters.promote(reg, "acme", good, "default", " ")
    with pytest.raises(adapters.RegistryError, match="not usable as a registry entry"):
        adapters.promote(reg, "../acme", good, "default", "path escape")
    assert adapters.live(reg, "acme") is None


def test_rollback_walks_back_and_repoints_the_modelfile(tmp_path):
    reg = tmp_path / "registry"
    runs = [fake_release(tmp_path, f"r{i}", bytes([i])) for i in range(3)]
    for r in runs:
        adapters.promote(reg, "acme", r, "default", f"release {r.name}")
    assert adapters.rollback(reg, "acme", "quality drop")["version"] == "v2"
    assert (reg / "acme" / "Modelfile").read_text().startswith(f"FROM {runs[1] / 'export' / 'model-q8_0.gguf'}")
    assert adapters.rollback(reg, "acme", "still bad")["version"] == "v1"
    with pytest.raises(adapters.RegistryError, match="no version before v1"):
        adapters.rollback(reg, "acme", "once more")
    h = adapters.load(reg, "acme")["history"][-1]
    assert (h["action"], h["version"], h["from"], h["reason"]) == ("roll back", "v1", "v2", "still bad")


def test_rollback_then_erasure_of_one_tenant_leaves_the_other(tmp_path):
    reg = tmp_path / "registry"
    a1, a2 = fake_release(tmp_path, "a1", b"a-one"), fake_release(tmp_path, "a2", b"a-two")
    b1 = fake_release(tmp_path, "b1", b"b-one")
    adapters.promote(reg, "acme", a1, "default", "first")
    adapters.promote(reg, "acme", a2, "default", "second")
    adapters.promote(reg, "bluefin", b1, "default", "first")
    before = {p.relative_to(reg): p.read_bytes() for p in (reg / "bluefin").rglob("*") if p.is_file()}
    adapters.rollback(reg, "acme", "quality drop")
    adapters.erase(reg, "acme", "contract ended: erase the tenant's adapters")
    acme = adapters.load(reg, "acme")
    assert acme["live"] is None and all(v["erased"] for v in acme["versions"])
    assert not (reg / "acme" / "v1").exists() and not (reg / "acme" / "v2").exists()
    assert not (reg / "acme" / "Modelfile").exists()
    assert acme["history"][-1]["action"] == "erase"
    after = {p.relative_to(reg): p.read_bytes() for p in (reg / "bluefin").rglob("*") if p.is_file()}
    assert after == before and adapters.live(reg, "bluefin")["version"] == "v1"
    with pytest.raises(adapters.RegistryError, match="no live adapter"):
        adapters.rollback(reg, "acme", "after erasure")


def _prepared_run(tmp_path, task: Task):
    """A run directory with just what stage 06 reads before predicting: 02's settings and the task."""
    from dataclasses import asdict

    from kit.stages import prepare

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    src = tmp_path / "src.jsonl"
    src.write_text('{"ticket_id": "x", "body": "b"}\n')
    settings = asdict(prepare.PrepareConfig(run_dir=str(run), input_path=str(src), purpose="tests", task=task.kind,
                                         label_column="label" if task.kind == "classify" else "answer"))
    (run / "data" / "provenance.json").write_text(json.dumps({"parameters": settings}))
    return run


def test_logged_predictions_are_checked_and_logged_replies_redacted(tmp_path):
    reply = Task((), "Write the reply.", "reply")
    run = _prepared_run(tmp_path, reply)
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"ticket_id": "T1", "subject": "", "body": "My name is Aigerim Nurlanova, call me",
                                 "customer_name": "Aigerim Nurlanova",
                                 "served": "Hello Aigerim Nurlanova, we will call you back."}) + "\n")
    cfg = monitor.MonitorConfig(run_dir=str(run), batch_path=str(batch), prediction_column="served")
    rows, accounting = monitor.read_batch(cfg, run, reply)
    monitor.redact_and_audit(rows, accounting["config"], reply)
    assert "Nurlanova" not in rows[0]["text"] and "Nurlanova" not in rows[0]["logged"]
    assert "<PERSON_1>" in rows[0]["logged"]  # the same placeholder as in the ticket

    classify = Task(LABELS, "Route it.", "classify")
    run2 = _prepared_run(tmp_path / "c", classify)
    batch.write_text(json.dumps({"ticket_id": "T1", "subject": "", "body": "hello", "served": "claims"}) + "\n")
    cfg = monitor.MonitorConfig(run_dir=str(run2), batch_path=str(batch), prediction_column="served")
    with pytest.raises(monitor.MonitorError, match="logged prediction 'claims' in 'served' is not one of"):
        monitor.read_batch(cfg, run2, classify)
