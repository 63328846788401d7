"""The test watchdog fails a stalled command naming its step, and lets a slow but moving one finish."""

from __future__ import annotations

import os
import sys

import pytest

from tests.watchdog import run_watched

PY = sys.executable


def test_a_command_that_keeps_printing_is_not_killed_however_long_it_runs(tmp_path):
    script = "import time\nfor i in range(12):\n    print('rule step_%d:' % i, flush=True); time.sleep(0.25)\n"
    code, out, _ = run_watched([PY, "-c", script], tmp_path, dict(os.environ), tmp_path / "out.log", stall_s=2)
    assert code == 0 and "rule step_11:" in out


def test_a_stalled_command_is_killed_and_the_failure_names_the_running_step(tmp_path):
    script = "import time\nprint('rule finetune:', flush=True)\nprint('Running stage ...', flush=True)\ntime.sleep(120)\n"
    with pytest.raises(pytest.fail.Exception) as failure:
        run_watched([PY, "-c", script], tmp_path, dict(os.environ), tmp_path / "out.log", stall_s=2)
    message = str(failure.value)
    assert "no progress for" in message and "step running: finetune" in message


def test_a_log_file_that_changes_counts_as_progress(tmp_path):
    (tmp_path / "logs").mkdir()
    script = ("import time, pathlib\nfor i in range(10):\n"
              "    pathlib.Path('logs/job.log').write_text(str(i)); time.sleep(0.3)\n")
    code, _, _ = run_watched([PY, "-c", script], tmp_path, dict(os.environ), tmp_path / "out.log", stall_s=2)
    assert code == 0
