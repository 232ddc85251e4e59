import numpy as np
import pytest

from napari_samlabel.core.candidates import Candidate, CandidateSet, Decision, sort_by_score


def _cand(score: float, r0: int = 0) -> Candidate:
    mask = np.zeros((8, 8), bool)
    mask[r0:r0 + 2, :3] = True
    return Candidate(mask, score, "text:dog", class_id=1)


def test_threshold_hides_low_scores_and_decisions_leave_the_visible_list():
    cs = CandidateSet([_cand(0.9), _cand(0.4, 2), _cand(0.6, 4)], threshold=0.5)
    seen = []
    cs.events.changed.connect(lambda: seen.append("changed"))
    cs.events.decided.connect(lambda i, d: seen.append((i, d)))
    assert cs.visible() == [0, 2]
    cs.threshold = 0.3
    assert cs.visible() == [0, 1, 2] and seen == ["changed"]
    cs.decide(0, "accepted")
    cs.decide(1, Decision.REJECTED)
    assert cs.visible() == [2] and seen[1:] == [(0, "accepted"), (1, "rejected")]
    assert cs.counts()["accepted"] == 1 and cs.counts()["pending"] == 1
    cs.undecide(1)
    assert cs.visible() == [1, 2]
    cs.threshold = 0.95
    assert cs.visible() == [] and cs.counts()["hidden"] == 2


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        Candidate(np.zeros((2, 2, 2), bool), 0.5, "x")
    with pytest.raises(ValueError, match="finite"):
        Candidate(np.zeros((2, 2), bool), float("nan"), "x")
    cs = CandidateSet([_cand(0.5)])
    with pytest.raises(IndexError):
        cs.decide(3, "accepted")
    with pytest.raises(ValueError):
        cs.decide(0, "maybe")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cs.threshold = 1.5


def test_sort_by_score_is_best_first_and_masks_are_bool():
    a, b = _cand(0.2), _cand(0.8)
    assert sort_by_score([a, b]) == [b, a]
    assert Candidate(np.ones((3, 3), np.uint8), 0.5, "x").mask.dtype == bool
    assert a.area == 6
