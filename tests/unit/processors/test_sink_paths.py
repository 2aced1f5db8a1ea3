"""Confinement of file_sink paths (pure path logic over a temporary directory)."""
from __future__ import annotations

import pytest

from processors.sink_paths import PathNotAllowed, confine


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "a/../b", "/etc/passwd", "x\x00y", "", "  ", "d/"])
def test_rejected(tmp_path, path):
    with pytest.raises(PathNotAllowed):
        confine(path, str(tmp_path))


def test_relative_and_absolute_inside_are_accepted(tmp_path):
    assert confine("a/b.log", str(tmp_path)) == str(tmp_path / "a" / "b.log")
    assert confine(str(tmp_path / "c.log"), str(tmp_path)) == str(tmp_path / "c.log")


def test_sibling_directory_with_a_common_prefix_is_outside(tmp_path):
    root = tmp_path / "sink"
    root.mkdir()
    with pytest.raises(PathNotAllowed):
        confine(str(tmp_path / "sink-other" / "x.log"), str(root))


def test_symlink_inside_the_root_that_stays_inside_is_accepted(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert confine("alias/x.log", str(tmp_path)) == str(tmp_path / "real" / "x.log")
