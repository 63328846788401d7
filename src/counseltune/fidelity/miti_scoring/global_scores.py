"""MITI global scores (Cultivating Change Talk, Softening Sustain Talk, Partnership, Empathy): not from the embedded coder.

A global score is a coder's gestalt rating of a whole session on a 1-5 scale: how the counselor responds
to change and sustain talk, shares power, and seeks to understand the client's perspective. None of that
is a property of single utterances, and AnnoMI (the only training data here) has no global ratings, so
there is nothing honest to fit an utterance-level classifier's output to. Rules of thumb such as "more
complex reflections -> higher Empathy" would be a guess dressed as a measurement.

So the embedded coder reports every global score as None (not rated), and the summary scores built on
them (technical, relational) come out None as well. Global scores come from the LLM judge only (a later
piece of the fidelity stage), which rates whole sessions against the MITI manual's anchors; pass its
ratings to miti.summary_scores(counts, global_scores) to get technical/relational and their grades.
"""

from __future__ import annotations

from counseltune.instruments.miti import GLOBAL_SCORES

SOURCE = "llm_judge"  # the only component allowed to fill global scores
NOT_RATED_REASON = "global scores are session-level ratings; the embedded utterance coder does not estimate them"


def embedded_global_scores() -> dict[str, None]:
    """The embedded coder's global scores: all None (not rated), one key per MITI global."""
    return {name: None for name in GLOBAL_SCORES}
