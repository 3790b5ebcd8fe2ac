"""The fault matrix, reduced (benchmarks/chaos.py runs the full one): one training run killed in a step
(SIGKILL), an evaluation (SIGTERM), a checkpoint write (SIGKILL) and the export (SIGTERM), resumed each time;
it must end where an uninterrupted run with the same seed ends, with nothing corrupt and nothing left over."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import chaos  # noqa: E402

BACKUP_EVERY_S = 1


@pytest.mark.slow
def test_killed_four_times_resumes_to_the_same_result(tmp_path, shakespeare_path, monkeypatch):
    monkeypatch.setattr(chaos, "SHAKESPEARE", shakespeare_path)
    schedule = [("step", signal.SIGKILL), ("evaluation", signal.SIGTERM), ("checkpoint", signal.SIGKILL),
                ("export", signal.SIGTERM)]
    k = chaos.kills(tmp_path, len(schedule), seed=0, steps=240, eval_every=80, backup_every_s=BACKUP_EVERY_S,
                    schedule=schedule)
    print(chaos.report(k, BACKUP_EVERY_S, None, None, None))
    assert [(x.phase, x.signal) for x in k.kills] == [(p, signal.Signals(s).name) for p, s in schedule]
    assert not k.failed_resumes and all(x.resumed_from is not None for x in k.kills)
    assert [x.exit_code for x in k.kills] == [-9, 143, -9, 143]
    for x in k.kills:
        if x.signal == "SIGTERM":
            assert x.resumed_from >= x.step  # a checkpoint at the step it stopped at (after finishing that step)
        else:  # a SIGKILL loses at most what was trained since the newest checkpoint (a backup interval + a step)
            assert x.resumed_from <= x.step and x.seconds_since_save < BACKUP_EVERY_S + 10
    assert k.checkpoints_load and k.export_loads and not k.temporaries
    assert k.final_val_loss == pytest.approx(k.reference_val_loss, abs=1e-5)
    assert k.evaluations[0] == k.evaluations[1]  # every evaluation happened, with the same loss
