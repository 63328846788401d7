"""The spend ledger: one budget for every stage and job, safe when processes race for it, never held hostage by
a killed job, with the spend booked per stage and model."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from counseltune.llm.ledger import LedgerError, SpendLedger


def test_reservations_and_spend_of_all_clients_share_one_limit(tmp_path):
    judge, simulator = SpendLedger(tmp_path / "spend.json", 1.0), SpendLedger(tmp_path / "spend.json", 1.0)
    a = judge.reserve(0.6)
    assert a is not None
    assert simulator.reserve(0.5) is None  # the other client's reservation counts
    judge.settle(a, 0.3, stage="fidelity", model="m1")
    b = simulator.reserve(0.5)
    assert b is not None
    simulator.settle(b, 0.45, stage="fidelity", model="m2")
    assert judge.reserve(0.3) is None  # 0.75 spent: 0.3 more would pass 1.0
    spent = judge.spent()
    assert spent["spent_usd"] == pytest.approx(0.75)
    assert spent["by_stage_model"] == {"fidelity|m1": pytest.approx(0.3), "fidelity|m2": pytest.approx(0.45)}


def test_a_dead_processes_reservation_is_released(tmp_path):
    ledger = SpendLedger(tmp_path / "spend.json", 1.0)
    child = multiprocessing.get_context("fork").Process(target=_reserve_and_die, args=(str(tmp_path / "spend.json"),))
    child.start()
    child.join()
    state = json.loads((tmp_path / "spend.json").read_text())
    assert len(state["reserved"]) == 1  # left behind by the killed process
    assert ledger.reserve(0.9) is not None  # ... and not counted


def _reserve_and_die(path: str) -> None:
    SpendLedger(path, 1.0).reserve(0.9)
    os._exit(0)


def test_concurrent_processes_never_overspend(tmp_path):
    path = str(tmp_path / "spend.json")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        granted = sum(pool.map(_spend_one_cent_many_times, [path] * 4))
    assert granted == 100  # exactly the budget, whatever the interleaving
    assert SpendLedger(path, 1.0).spent()["spent_usd"] == pytest.approx(1.0)


def _spend_one_cent_many_times(path: str) -> int:
    ledger, granted = SpendLedger(path, 1.0), 0
    for _ in range(40):
        ticket = ledger.reserve(0.01)
        if ticket is not None:
            granted += 1
            time.sleep(0.001)
            ledger.settle(ticket, 0.01, stage="synthesize", model="gpt")
    return granted


def test_a_damaged_ledger_stops_spending_with_one_clear_line(tmp_path):
    (tmp_path / "spend.json").write_text("{not json")
    with pytest.raises(LedgerError, match="spend.json is not valid JSON"):
        SpendLedger(tmp_path / "spend.json", 1.0).reserve(0.1)
