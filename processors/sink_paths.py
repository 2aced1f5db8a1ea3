"""Confinement of file_sink paths to ``KCM_FILE_SINK_ROOT``.

Checked twice: in the ConfigSchema (so the API answers 422 before anything is stored) and again at open()
(the filesystem may have changed since: a symlink planted later must not let the sink escape).
"""
from __future__ import annotations

import os
from pathlib import PurePosixPath


class PathNotAllowed(ValueError):
    pass


def confine(path: str, root: str) -> str:
    """The absolute, symlink-resolved path of ``path`` inside ``root``; raises ``PathNotAllowed``."""
    if not isinstance(path, str) or not path.strip():
        raise PathNotAllowed("path must be a non-empty string")
    if "\x00" in path:
        raise PathNotAllowed("path must not contain NUL bytes")
    if ".." in PurePosixPath(path).parts:
        raise PathNotAllowed("path must not contain '..'")
    if path.endswith("/"):
        raise PathNotAllowed("path must name a file, not a directory")
    real_root = os.path.realpath(root)
    candidate = path if os.path.isabs(path) else os.path.join(real_root, path)
    normal = os.path.normpath(candidate)
    if not _inside(normal, real_root) and not _inside(normal, os.path.normpath(root)):
        raise PathNotAllowed(f"path must be inside the file sink root {root}")
    # realpath follows every symlink that exists today, the final component included
    resolved = os.path.realpath(normal)
    if not _inside(resolved, real_root):
        raise PathNotAllowed(f"path resolves outside the file sink root {root} (symlink)")
    if resolved == real_root:
        raise PathNotAllowed("path must name a file inside the root, not the root itself")
    return resolved


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
