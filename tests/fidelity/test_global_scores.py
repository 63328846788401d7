from counseltune.instruments import miti
from counseltune.fidelity.miti_scoring.global_scores import embedded_global_scores


def test_embedded_coder_rates_no_global_scores():
    ratings = embedded_global_scores()
    assert set(ratings) == set(miti.GLOBAL_SCORES) and all(v is None for v in ratings.values())
    scores = miti.summary_scores({"question": 2, "simple_reflection": 1, "complex_reflection": 1}, ratings)
    assert scores["technical"] is None and scores["relational"] is None
