"""Atomic writes: complete files appear with ordinary permissions; a failed write leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fidkit._atomic import atomic_path


def test_replaces_on_success_with_umask_permissions(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.bin"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and not final.exists()
        tmp.write_bytes(b"complete")
    mask = os.umask(0)
    os.umask(mask)
    assert final.read_bytes() == b"complete"
    assert final.stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in final.parent.iterdir()) == ["out.bin"]


def test_failure_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "out.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
