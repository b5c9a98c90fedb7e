import json

import pytest
from conftest import REPO

from kit.report import review
from kit.stages import prepare


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("review")
    prepare.run(prepare.PrepareConfig(run_dir=str(d), input_path=str(REPO / "data_samples" / "tickets.csv"),
                                purpose="tests", max_rows=200))
    return d


def test_sample_is_five_percent_seeded_and_redacted(run_dir):
    a = review.sample(run_dir, 0.05, seed=1)
    assert a == review.sample(run_dir, 0.05, seed=1) and a != review.sample(run_dir, 0.05, seed=2)
    n_rows = sum(1 for f in ("train", "holdout") for _ in open(run_dir / "data" / f"{f}.jsonl"))
    assert len(a) == max(5, round(0.05 * n_rows))
    assert all(r["file"] in ("train", "holdout") and "text" in r for r in a)


def test_reviews_are_saved_one_line_each_and_a_rereview_replaces(tmp_path):
    path = tmp_path / "reviews.jsonl"
    review.save(path, review.Review("ana", "T1", "accept", "claim_status"))
    review.save(path, review.Review("ana", "T2", "flag_pii", "claim_status", "a name is left in the signature"))
    review.save(path, review.Review("ana", "T1", "relabel", "billing_dispute", "asks for a refund"))
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["id"], r["decision"]) for r in rows] == [("T2", "flag_pii"), ("T1", "relabel")]
    assert all(r["at"] for r in rows)


@pytest.mark.parametrize("decision, reason, match", [
    ("approve", "", "not one of accept, relabel, flag_pii"),
    ("flag_pii", "", "needs a one-line reason"),
    ("relabel", "two\nlines", "fit on one line"),
])
def test_bad_review_entries_are_refused(decision, reason, match):
    with pytest.raises(review.ReviewError, match=match):
        review.Review("ana", "T1", decision, "claim_status", reason)


def _write(path, reviewer, decisions):
    for i, (d, lab) in enumerate(decisions):
        review.save(path, review.Review(reviewer, f"T{i}", d, lab, "" if d == "accept" else "reason"))


def test_kappa_matches_a_hand_computed_value(tmp_path):
    # 10 rows: A and B each accept 6 and flag 4, and agree on 8.
    a = ["accept"] * 6 + ["flag_pii"] * 4
    b = ["accept"] * 5 + ["flag_pii"] + ["flag_pii"] * 3 + ["accept"]
    _write(tmp_path / "a.jsonl", "a", [(d, "claim_status") for d in a])
    _write(tmp_path / "b.jsonl", "b", [(d, "claim_status") for d in b])
    k = review.kappa(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    # p_o = 0.8; p_e = 0.6*0.6 + 0.4*0.4 = 0.52; kappa = (0.8 - 0.52) / 0.48 = 0.5833
    assert k["rows"] == 10 and k["decision_kappa"] == pytest.approx(0.583) and k["agreement"] == 0.8
    # every label the same for both: kappa is undefined (one category), so None, and the raw agreement says it all
    assert k["label_kappa"] is None and k["label_agreement"] == 1.0


def test_kappa_needs_shared_rows(tmp_path):
    _write(tmp_path / "a.jsonl", "a", [("accept", "claim_status")])
    _write(tmp_path / "b.jsonl", "b", [("accept", "claim_status")])
    with pytest.raises(review.ReviewError, match="kappa needs at least 2"):
        review.kappa(tmp_path / "a.jsonl", tmp_path / "b.jsonl")


def test_headless_run_records_that_no_review_happened(run_dir):
    status = review.record_status(run_dir, "", 12)
    saved = json.loads((run_dir / "data" / "review_status.json").read_text())
    assert saved["reviewed"] is False and "no human review happened" in saved["note"] and status == saved


def test_panel_saves_a_decision_when_a_button_is_clicked(run_dir):
    rows = review.sample(run_dir, 0.05, seed=0)
    box = review.panel(run_dir, "ana", rows, list(prepare.DEFAULT_LABELS))
    buttons = box.children[2].children[1:]
    buttons[0].click()  # accept the first row
    saved = review.load(run_dir / "data" / "reviews.jsonl")
    assert [(r.id, r.decision, r.reviewer) for r in saved] == [(rows[0]["id"], "accept", "ana")]
    buttons[2].click()  # flag PII without a reason: refused, nothing saved
    assert len(review.load(run_dir / "data" / "reviews.jsonl")) == 1
