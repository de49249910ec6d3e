"""Output locations settled before work: refusal of existing outputs, write probes, one writer per folder."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from proseg_pyro.outputs import LOCK_NAME, OutputError, folder_lock, prepare_outputs, prepare_run


def test_existing_outputs_are_refused_unless_forced_and_leftovers_are_removed(tmp_path):
    kept = tmp_path / "table.json"
    kept.write_text("mine")
    (tmp_path / ".partial-abc123-table.json").write_text("half")
    (tmp_path / ".partial-abc123-other.json").write_text("another output's")
    with pytest.raises(OutputError, match="table.json: already exists"):
        prepare_outputs([kept, None], force=False)
    assert kept.read_text() == "mine"
    prepare_outputs([kept], force=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".partial-abc123-other.json", "table.json"]


def test_folders_are_created_and_probed_before_any_work(tmp_path):
    prepare_outputs([tmp_path / "new" / "deeper" / "mask.nii.gz"], force=False)
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create the output folder"):
        prepare_outputs([tmp_path / "file" / "out" / "mask.nii.gz"], force=False)
    with pytest.raises(OutputError, match="cannot write there"):
        prepare_outputs([tmp_path / ("x" * 250 + ".nii.gz")], force=False)


def test_a_run_folder_is_resumed_replaced_or_refused(tmp_path):
    with pytest.raises(OutputError, match="nothing to resume"):
        prepare_run(tmp_path, force=False, resume=True)
    (tmp_path / "last.pt").write_bytes(b"run")
    (tmp_path / "notes.txt").write_text("mine")
    prepare_run(tmp_path, force=False, resume=True)
    with pytest.raises(OutputError, match=r"already holds a run \(last.pt\)"):
        prepare_run(tmp_path, force=False, resume=False)
    prepare_run(tmp_path, force=True, resume=False)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


HOLD = ("import sys, time; from proseg_pyro.outputs import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(600)")


def test_a_second_writer_is_refused_and_a_dead_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # waits for the event, not for a time
        with pytest.raises(OutputError, match=f"another process \\(pid {holder.pid}\\) is writing here"):
            with folder_lock(tmp_path):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    finally:
        holder.kill()
        holder.stdout.close()
    assert (tmp_path / LOCK_NAME).exists()  # the file stays; the kernel released its lock with the process
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() != str(holder.pid)
