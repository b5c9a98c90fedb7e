"""The evaluate stage end to end on a tiny adapter: every model, metric, probe and file it promises."""

import dataclasses
import json

import pytest
from conftest import busy_core_beside, write_run_basics

from kit import models
from kit.report import review
from kit.stages import evaluate, train


@pytest.fixture(scope="module")
def tiny_eval(tmp_path_factory, tiny_model_dir):
    run_dir = tmp_path_factory.mktemp("evalrun")
    resolved = models.resolve(str(tiny_model_dir))
    write_run_basics(run_dir, str(tiny_model_dir), resolved)
    train.run(train.TrainConfig(run_dir=str(run_dir), model=str(tiny_model_dir), max_steps=2, batch_size=4,
                                checkpoint_every_steps=10))
    cfg = evaluate.EvalConfig(run_dir=str(run_dir), model=str(tiny_model_dir), max_examples=10, batch_size=5,
                              bootstrap_samples=100, few_shot_k=2, canary_candidates=10, probe_control_steps=2,
                              critical_label="agent_escalation")
    return cfg, evaluate.run(cfg)


def test_every_model_is_measured_on_the_same_holdout(tiny_eval):
    cfg, result = tiny_eval
    m = result.metrics["models"]
    assert set(m) == {"tuned", "base_zero_shot", "base_few_shot", "tfidf_logreg", "majority_class"}
    assert {v["n"] for v in m.values()} == {10}
    for name in ("tuned", "base_zero_shot", "base_few_shot", "tfidf_logreg"):
        assert 0 <= m[name]["ece"] <= 1 and len(m[name]["reliability"]) == 10
        assert m[name]["handoff"]["threshold"] == cfg.handoff_confidence
    assert m["tuned"]["escalation"]["critical_label"] == "agent_escalation"
    ids = {}
    for p in result.predictions:
        ids.setdefault(p["model"], []).append(p["id"])
    assert len({tuple(v) for v in ids.values()}) == 1
    best = result.metrics["best_baseline"]
    assert best != "tuned" and m[best]["accuracy"] == max(v["accuracy"] for k, v in m.items() if k != "tuned")
    assert result.metrics["verdict"]["baseline"] == best and result.metrics["verdict"]["sentence"]


def test_prompts_are_cut_at_the_budget_training_stored_with_the_adapter(tiny_eval):
    from kit.tasks.base import prompt_budget

    cfg, result = tiny_eval
    meta = json.loads((__import__("pathlib").Path(cfg.run_dir) / "adapters" / cfg.adapter_name /
                       "kit_adapter.json").read_text())
    assert cfg.max_length == 0  # the default: the adapter's own length, which training sized from the data
    assert meta["max_length"] == result.metrics["max_length"] == 192 and "sized from the data" in meta["max_length_why"]
    assert meta["prompt_tokens"] + meta["answer_tokens"] == meta["max_length"]  # training's rule: room for the answer
    assert result.metrics["prompt_tokens"] == meta["prompt_tokens"] == prompt_budget(meta)
    assert prompt_budget({}, 192) == 184  # an adapter from before kit stored its budget: the old cut


def test_a_large_holdout_is_sampled_by_label_and_the_first_n_rows_stay_on_request():
    rows = [{"id": f"r{i}", "label": lab} for lab, n in (("a", 1500), ("b", 450), ("c", 50)) for i in range(n)]
    picked, note = evaluate.holdout_rows(rows, "classify", 0, seed=0)
    assert len(picked) == evaluate.EVAL_MAX_ROWS["classify"] == 1000
    assert note == "1000 of 2000 holdout rows, a seeded sample (stratified by label, seed 0)"
    counts = {lab: sum(r["label"] == lab for r in picked) for lab in "abc"}
    assert counts == {"a": 750, "b": 225, "c": 25}  # the file is sorted by label; the sample keeps its shares
    assert picked == sorted(picked, key=rows.index) and picked == evaluate.holdout_rows(rows, "classify", 0, 0)[0]
    assert evaluate.holdout_rows(rows, "classify", 5, 0) == (rows[:5], "the first 5 of 2000 holdout rows "
                                                                         "(max_examples=5)")
    assert evaluate.holdout_rows(rows[:300], "classify", 0, 0) == (rows[:300], "all 300 holdout rows")
    assert len(evaluate.holdout_rows(rows[:400], "reply", 0, 0)[0]) == evaluate.EVAL_MAX_ROWS["reply"]
    # Generated answers: the cap holds for short ones (STAR replies: up to 75 tokens); long ones get fewer rows, never
    # fewer than EVAL_MIN_GENERATED, and the note says why. Labels are never capped by length.
    assert len(evaluate.holdout_rows(rows[:400], "reply", 0, 0, max_new=75)[0]) == 300
    long_picked, long_note = evaluate.holdout_rows(rows[:400], "reply", 0, 0, max_new=244)
    assert len(long_picked) == 122 and "122 rather than 300, as answers may run to 244 tokens" in long_note
    assert len(evaluate.holdout_rows(rows[:400], "extract", 0, 0, max_new=900)[0]) == evaluate.EVAL_MIN_GENERATED
    assert len(evaluate.holdout_rows(rows, "classify", 0, 0, max_new=900)[0]) == 1000
    assert evaluate.answer_cap({"answer_tokens": 188}) == 243 and evaluate.answer_cap({}) == 88


def test_files_written_and_probes_recorded(tiny_eval):
    cfg, result = tiny_eval
    eval_dir = __import__("pathlib").Path(cfg.run_dir) / "eval"
    for key in ("metrics", "predictions", "probes", "models", "confusion", "calibration", "probes_plot"):
        path = __import__("pathlib").Path(result.paths[key])
        assert path.parent == eval_dir and path.stat().st_size > 0, key
    saved = json.loads(open(result.paths["metrics"]).read())
    assert saved["review"]["done"] is False and "no human review happened" in saved["review"]["note"]
    probes = saved["probes"]
    # The prepare stage planted canaries into the raw data and listed them in data/canaries.json: those are probed.
    planted = json.loads((__import__("pathlib").Path(cfg.run_dir) / "data" / "canaries.json").read_text())
    assert probes["planted"] is True and probes["canary_source"] == "data/canaries.json"
    assert len(probes["canaries"]) == len(planted["canaries"]) > 0
    assert all(1 <= c["rank"] <= 11 for c in probes["canaries"])
    assert len(probes["pii_echo"]["tuned"]) == 10 and probes["control"]["steps"] == 2
    assert saved["regression"] is None and saved["endpoint"] is None


def test_unknown_critical_label_names_the_lanes(tiny_eval):
    cfg, _ = tiny_eval
    bad = evaluate.EvalConfig(**{**cfg.__dict__, "critical_label": "fraud"})
    with pytest.raises(evaluate.EvalError, match="critical_label='fraud' is not a lane.*claim_status"):
        evaluate.run(bad)


def test_reviews_are_saved_replaced_and_agreement_is_measured(tiny_eval, tmp_path):
    cfg, result = tiny_eval
    items = review.sample_answers(cfg.run_dir, n=4)
    assert len(items) == 4 and all(it["text"] for it in items)
    wrong_first = [it["correct"] for it in items]
    assert wrong_first == sorted(wrong_first)  # errors are shown first
    for i, it in enumerate(items):
        review.record_answer(cfg.run_dir, {"id": it["id"], "model": "tuned", "reviewer": "ana", "verdict": "pass"})
        review.record_answer(cfg.run_dir, {"id": it["id"], "model": "tuned", "reviewer": "ben",
                                           "verdict": "pass" if i < 3 else "fail", "reason": "wrong lane"})
    review.record_answer(cfg.run_dir, {"id": items[3]["id"], "model": "tuned", "reviewer": "ana", "verdict": "fail"})
    s = review.answer_summary(cfg.run_dir)
    assert s["done"] and s["reviews"] == 8 and s["reviewers"]["ana"]["pass_rate"] == 0.75
    assert s["kappa"]["kappa"] == pytest.approx(1.0) and s["kappa"]["rows"] == 4
    with pytest.raises(review.ReviewError, match="verdict 'maybe'"):
        review.record_answer(cfg.run_dir, {"id": "x", "model": "tuned", "reviewer": "ana", "verdict": "maybe"})
    review.answers_path(cfg.run_dir).unlink()


def _export_cfg(cfg, tmp_path):
    from kit.stages import export

    license_file = tmp_path / "LICENSE.txt"
    license_file.write_text("Test license text for the tiny model.")
    return export.ExportConfig(run_dir=cfg.run_dir, model=cfg.model, gguf_types=("f16",), modelfile_gguf="f16",
                               adapter_variant=False, max_examples=6, license_file=str(license_file))


def test_export_checks_parity_in_llama_cpp_outside_the_calling_process(tiny_eval, tmp_path, monkeypatch):
    from kit.stages import export

    cfg, _ = tiny_eval
    monkeypatch.setitem(export.PARITY_MAX_ROWS, "classify", 6)  # 04 scored 10 rows: parity answers a seeded sample of 6
    res = export.run(dataclasses.replace(_export_cfg(cfg, tmp_path), max_examples=0))
    row = res.parity["types"]["f16"]
    assert res.parity["n"] == 6 and res.parity["of_scored"] == 10
    assert 0.0 <= row["label_agreement"] <= 1.0 and row["required"] is True
    assert json.loads(open(res.paths["parity"]).read())["types"]["f16"]["sha256"] == row["sha256"]


def test_export_checks_the_license_note_and_the_adapters_base_before_any_work(tiny_eval, tmp_path):
    import shutil

    from kit.stages import export

    cfg, _ = tiny_eval
    run = tmp_path / "run"
    shutil.copytree(cfg.run_dir, run, ignore=shutil.ignore_patterns("export"))
    ecfg = dataclasses.replace(_export_cfg(cfg, tmp_path), run_dir=str(run))
    note = json.loads((run / "license_note.json").read_text())

    (run / "license_note.json").unlink()
    with pytest.raises(export.ExportError, match=r"no license note at .*run notebook 01_license.*ships the base model"):
        export.run(ecfg)
    (run / "license_note.json").write_text(json.dumps({**note, "approved": False}))
    with pytest.raises(export.ExportError, match="is not approved"):
        export.run(ecfg)
    (run / "license_note.json").write_text(json.dumps(note))
    meta_path = run / "adapters" / "default" / "kit_adapter.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "base_model_sha256": "0" * 64}))
    with pytest.raises(export.ExportError, match="trained on a different base model"):
        export.run(ecfg)
    assert not (run / "export" / "merged").exists()  # refused before merging anything


def test_a_llama_cpp_crash_during_export_is_an_export_error_not_a_dead_process(tiny_eval, tmp_path, monkeypatch):
    """05's parity check with llama.cpp faulting natively (SIGSEGV in libllama): the stage raises, this process lives."""
    from test_export_gguf import crash_in_llama_cpp

    from kit.stages import export

    cfg, _ = tiny_eval
    monkeypatch.setattr(export, "parity_answers", crash_in_llama_cpp)
    with pytest.raises(export.ExportError, match=r"crashed with SIGSEGV while checking parity of f16 .*model-f16\.gguf"):
        export.run(_export_cfg(cfg, tmp_path))


def test_evaluation_beside_a_busy_core_uses_the_free_ones_and_records_it(tiny_eval):
    import torch

    cfg, _ = tiny_eval
    quick = dataclasses.replace(cfg, few_shot_k=0, probe_control_steps=0, max_examples=5)
    with busy_core_beside() as cores:
        result = evaluate.run(quick)
        assert torch.get_num_threads() == cores  # restored after the stage
    changes = json.loads(open(result.paths["metrics"]).read())["thread_changes"]
    assert changes and changes[0]["at"] == "start" and changes[0]["threads"] <= cores - 1
