"""pipeline.search.history: the append-only trial history on real files, and the study lock between real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.search.history import History, StudyLocked, study_folder, study_lock

STUDY = {"parent_run_id": "parent-1", "study": "flights", "seed": 3, "metric": "rmse"}


def trial(number: int, value: float = 1.0) -> dict:
    """A trial entry shaped like the one run_search appends (its number, outcome and record)."""
    return {
        "number": number,
        "outcome": {"number": number, "params": {"max_depth": 3 + number}, "value": value, "ok": True},
        "record": {"number": number, "params": {"max_depth": 3 + number}, "curves": {"rmse": [3.0, 2.0, value]}},
    }


def started(tmp_path: Path) -> History:
    history = History(tmp_path / "study" / "history.jsonl")
    history.start(STUDY)
    return history


def test_start_append_and_read_round_trip(tmp_path):
    history = started(tmp_path)
    for number in range(3):
        history.append_trial(trial(number, value=10.0 - number))
    history.append_logged(0, "run-0")
    history.append_logged(2, "run-2")

    state = History(history.path).read()  # a new reader, as a resumed process has

    assert state is not None
    assert state.study == {"type": "study", **STUDY}
    assert [t["outcome"]["number"] for t in state.trials] == [0, 1, 2]
    assert [t["outcome"]["value"] for t in state.trials] == [10.0, 9.0, 8.0]
    assert state.trials[1] == {"type": "trial", **trial(1, value=9.0)}
    assert state.logged == {0: "run-0", 2: "run-2"}


def test_start_replaces_an_existing_history_and_leaves_no_temporary_file(tmp_path):
    history = started(tmp_path)
    history.append_trial(trial(0))

    history.start(STUDY | {"parent_run_id": "parent-2"})

    state = history.read()
    assert state.study["parent_run_id"] == "parent-2"
    assert state.trials == []
    assert sorted(p.name for p in history.path.parent.iterdir()) == ["history.jsonl"]


def test_nan_and_infinite_values_survive_the_round_trip(tmp_path):
    history = started(tmp_path)
    history.append_trial(trial(0, value=float("nan")))
    history.append_trial(trial(1, value=float("inf")))

    values = [t["outcome"]["value"] for t in history.read().trials]

    assert values[0] != values[0]  # NaN
    assert values[1] == float("inf")


def test_a_torn_last_line_is_dropped_and_cut_off_so_later_appends_start_clean(tmp_path):
    history = started(tmp_path)
    history.append_trial(trial(0))
    history.append_trial(trial(1))
    history.append_logged(0, "run-0")
    complete = history.path.read_bytes()
    line = json.dumps({"type": "trial", **trial(2)}).encode()
    with history.path.open("ab") as handle:  # what a process killed in the middle of a write leaves
        handle.write(line[: len(line) // 2])

    state = history.read()

    assert [t["outcome"]["number"] for t in state.trials] == [0, 1]
    assert state.logged == {0: "run-0"}
    assert history.path.read_bytes() == complete, "the torn bytes should be cut off the file"

    history.append_trial(trial(2, value=0.5))
    history.append_logged(1, "run-1")
    state = history.read()
    assert [t["outcome"]["number"] for t in state.trials] == [0, 1, 2]
    assert state.trials[2]["outcome"]["value"] == 0.5
    assert state.logged == {0: "run-0", 1: "run-1"}
    assert all(json.loads(line) for line in history.path.read_bytes().splitlines())


def test_a_torn_study_line_reads_as_no_study_and_empties_the_file(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_bytes(b'{"type": "study", "parent_run_id": "par')

    assert History(path).read() is None
    assert path.read_bytes() == b""


def test_a_corrupt_line_in_the_middle_names_the_file_and_line_and_suggests_fresh(tmp_path):
    history = started(tmp_path)
    history.append_trial(trial(0))
    with history.path.open("ab") as handle:
        handle.write(b'{"type": "trial", "outcome": garbage}\n')
    history.append_trial(trial(1))
    before = history.path.read_bytes()

    with pytest.raises(PipelineError) as raised:
        history.read()

    message = str(raised.value)
    assert str(history.path) in message
    assert "line 3" in message
    assert "--fresh" in message
    assert history.path.read_bytes() == before, "a corrupt file must be left as it is"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n\n",
        json.dumps({"type": "trial", **trial(0)}).encode() + b"\n",
        json.dumps({"type": "logged", "number": 0, "run_id": "r"}).encode() + b"\n",
    ],
    ids=["empty", "blank-lines", "trial-first", "logged-first"],
)
def test_a_file_without_a_study_first_line_reads_as_none(tmp_path, content):
    path = tmp_path / "history.jsonl"
    path.write_bytes(content)

    assert History(path).read() is None


def test_a_missing_file_reads_as_none_and_is_not_created(tmp_path):
    path = tmp_path / "nowhere" / "history.jsonl"

    assert History(path).read() is None
    assert not path.exists()


def test_only_the_next_trial_number_is_accepted(tmp_path):
    history = started(tmp_path)
    history.append_trial(trial(0, value=1.0))
    history.append_trial(trial(2, value=9.0))  # skips 1: ignored
    history.append_trial(trial(0, value=9.0))  # a duplicate of 0: ignored
    history.append_trial(trial(1, value=2.0))
    history.append_trial(trial(1, value=9.0))  # a duplicate of 1: ignored
    history.append_trial(trial(2, value=3.0))

    state = history.read()

    assert [t["outcome"]["number"] for t in state.trials] == [0, 1, 2]
    assert [t["outcome"]["value"] for t in state.trials] == [1.0, 2.0, 3.0]


def test_archive_renames_the_file_so_the_next_run_starts_a_new_study(tmp_path):
    history = started(tmp_path)
    history.append_trial(trial(0))
    content = history.path.read_bytes()

    target = history.archive("parent/1 done")

    assert target.parent == history.path.parent and target.name.startswith("parent_1_done-")
    assert target.read_bytes() == content
    assert not history.path.exists()
    assert history.read() is None


def test_study_folder_sanitizes_names_and_keeps_different_names_apart(tmp_path):
    folder = study_folder(tmp_path, "team/flights exp", "my study: v2/a")

    assert folder.parent.parent == tmp_path
    assert folder.parent.name.startswith("team_flights_exp-") and folder.name.startswith("my_study_v2_a-")
    assert study_folder(tmp_path, "flights-1.0_x", "s") == tmp_path / "flights-1.0_x" / "s"  # safe names kept
    assert study_folder(tmp_path, "e", "my study") != study_folder(tmp_path, "e", "my_study")
    for name in ("..", ".", ""):
        assert study_folder(tmp_path, "e", name).parent == tmp_path / "e"  # never outside its experiment


def test_a_second_holder_is_refused_with_exit_3_naming_the_study_and_the_pid(tmp_path):
    folder = tmp_path / "study"
    with study_lock(folder, "flights"):
        assert (folder / "lock").read_text() == f"pid {os.getpid()}"
        with pytest.raises(StudyLocked) as raised, study_lock(folder, "flights"):
            pytest.fail("the lock was taken twice")
        assert raised.value.exit_code == 3
        assert "'flights'" in str(raised.value)
        assert f"pid {os.getpid()}" in str(raised.value)
        assert (folder / "lock").read_text() == f"pid {os.getpid()}", "a refused taker must not erase the holder"

    with study_lock(folder, "flights"):  # released when the block exits
        pass


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    folder = tmp_path / "study"
    with pytest.raises(RuntimeError), study_lock(folder, "flights"):
        raise RuntimeError("the study failed")

    with study_lock(folder, "flights"):
        pass


HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipeline.search.history import study_lock
with study_lock(Path(sys.argv[1]), "flights"):
    time.sleep(120)
"""


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)])
    try:
        deadline = time.monotonic() + 30
        lock = folder / "lock"
        while not (lock.exists() and lock.read_text() == f"pid {holder.pid}"):
            assert holder.poll() is None, "the child exited before taking the lock"
            assert time.monotonic() < deadline, "the child never took the lock"
            time.sleep(0.02)
        with pytest.raises(StudyLocked, match=f"pid {holder.pid}"), study_lock(folder, "flights"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL

    with study_lock(folder, "flights"):
        assert (folder / "lock").read_text() == f"pid {os.getpid()}"


def test_appends_from_two_threads_never_interleave(tmp_path):
    history = started(tmp_path)
    per_thread = 200

    def append(offset: int) -> None:
        for i in range(per_thread):
            history.append_logged(offset + i, f"run-{offset + i}-" + "x" * 200)

    threads = [threading.Thread(target=append, args=(offset,)) for offset in (0, 10_000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = history.path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    entries = [json.loads(line) for line in lines[:-1]]
    assert len(entries) == 1 + 2 * per_thread
    assert entries[0]["type"] == "study"
    state = history.read()
    assert sorted(state.logged) == [*range(per_thread), *range(10_000, 10_000 + per_thread)]
    assert all(run_id == f"run-{number}-" + "x" * 200 for number, run_id in state.logged.items())


WARM_POINTS = [
    {"model": "xgboost", "max_depth": 4, "learning_rate": 0.1},
    {"model": "xgboost", "max_depth": 7, "learning_rate": 0.03},
]


def test_warm_start_points_and_the_trials_that_ran_them_are_recorded(tmp_path):
    history = History(tmp_path / "study" / "history.jsonl")
    history.start(STUDY, warm_start=WARM_POINTS)
    history.append_trial(trial(0), warm_start=True)
    history.append_trial(trial(1), warm_start=True)
    history.append_trial(trial(2))

    state = History(history.path).read()

    assert state.warm_start == WARM_POINTS
    assert state.warm_start_numbers == {0, 1}
    assert state.trials[2] == {"type": "trial", **trial(2)}, "an ordinary trial's entry is unchanged"


def test_a_history_without_warm_start_has_none(tmp_path):
    state = started(tmp_path).read()

    assert state.warm_start == []
    assert state.warm_start_numbers == set()
    assert "warm_start" not in state.study
