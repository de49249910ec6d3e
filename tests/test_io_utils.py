"""Atomic writes: the target appears whole or not at all, with normal file permissions."""
from __future__ import annotations

import os

import pytest

from proseg_pyro.io_utils import atomic_path, atomic_write_text


def test_written_files_get_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "out.txt", "hello")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.txt").read_text() == "hello"
    assert os.stat(tmp_path / "out.txt").st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.endswith("out.nii.gz")  # writers that pick the format by extension still work
            with open(tmp, "w") as handle:
                handle.write("partial")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.nii.gz"]
