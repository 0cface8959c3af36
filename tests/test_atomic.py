"""sam.atomic: a file appears under its name only when its writer finished."""

from __future__ import annotations

import pytest

from sam.atomic import atomic_path, partial_path


def test_a_finished_write_is_renamed_into_place(tmp_path):
    target = tmp_path / "sub" / "out.png"
    with atomic_path(target) as tmp:
        assert tmp == partial_path(target) and tmp.suffix == ".png" and tmp.parent.is_dir()
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new" and not tmp.exists()


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
