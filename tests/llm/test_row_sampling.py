"""Per-request sampling: transformers' temperature and top-p, one generator per row, rows independent."""

from __future__ import annotations

import math

import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from counseltune.llm.row_sampling import RowSampler, nucleus, request_generator

KEY_A, KEY_B = "a" * 64, "b" * 64


def test_nucleus_keeps_the_smallest_set_holding_top_p_hand_computed():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    # ascending 0.2, 0.3, 0.5 -> cumulative 0.2, 0.5, 1.0: only 0.2 lies within the 1 - 0.6 = 0.4 that may go
    assert torch.isinf(nucleus(logits, 0.6)).tolist() == [[False, False, True]]
    assert torch.isinf(nucleus(logits, 0.01)).tolist() == [[False, True, True]]  # the top token always stays
    assert torch.equal(nucleus(logits, 1.0), logits)


def test_temperature_and_top_p_match_transformers_warpers():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    for temperature, top_p in ((0.7, 0.9), (1.3, 0.5), (1.0, 1.0)):
        ours = nucleus(logits / temperature, top_p)
        theirs = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.clone()))
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
        assert torch.allclose(ours[~torch.isinf(ours)], theirs[~torch.isinf(theirs)])


def test_draws_follow_the_nucleus_probabilities():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    sampler = RowSampler([request_generator(KEY_A)], temperature=1.0, top_p=0.6)
    counts = [0, 0, 0]
    for _ in range(4000):
        counts[int(sampler(None, logits).argmax())] += 1
    assert counts[2] == 0
    assert abs(counts[0] / 4000 - 0.5 / 0.8) < 0.03  # renormalised over the nucleus: 0.625 / 0.375


def test_a_rows_draws_depend_on_its_own_key_only():
    logits = torch.zeros(1, 1000)  # uniform: every draw is the generator's
    alone = RowSampler([request_generator(KEY_A)], 1.0, 1.0)
    paired = RowSampler([request_generator(KEY_B), request_generator(KEY_A)], 1.0, 1.0)
    draws_alone = [int(alone(None, logits).argmax()) for _ in range(20)]
    draws_paired = [int(paired(None, logits.repeat(2, 1))[1].argmax()) for _ in range(20)]
    assert draws_alone == draws_paired
    other = RowSampler([request_generator(KEY_B)], 1.0, 1.0)
    assert [int(other(None, logits).argmax()) for _ in range(20)] != draws_alone
