"""The file store: every file lives under one root, addressed by safe relative paths.

Paths are built only from ids this platform generated (validated with ``check_id``) and
fixed names, never from user input such as an upload's file name. Writes go to a
temporary sibling first and are renamed into place, so a crash never leaves a
half-written file under its final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

_ID = re.compile(r"^[0-9a-f]{32}$")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UnsafePath(ValueError):
    pass


def check_id(value: str) -> str:
    """Ids are 32 lowercase hex characters; anything else is refused."""
    if not isinstance(value, str) or not _ID.match(value):
        raise UnsafePath(f"not a valid id: {value!r}")
    return value


def is_id(value: str) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


class FileStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, relative: str) -> Path:
        """Absolute path of a store-relative path such as ``runs/<id>/model.pt``."""
        parts = relative.split("/")
        if not parts or any(not _PART.match(p) or p in {".", ".."} for p in parts):
            raise UnsafePath(f"unsafe store path: {relative!r}")
        full = self.root.joinpath(*parts).resolve()
        if full != self.root and self.root not in full.parents:
            raise UnsafePath(f"path escapes the store: {relative!r}")
        return full

    def exists(self, relative: str) -> bool:
        return self.path(relative).exists()

    def size(self, relative: str) -> int:
        return self.path(relative).stat().st_size

    @contextmanager
    def open_atomic(self, relative: str, mode: str = "wb") -> Iterator[IO[Any]]:
        """Write to a temp file beside the target; rename into place only on success."""
        target = self.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, mode) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise

    def temp_path(self, relative: str) -> Path:
        """A unique temp path beside ``relative`` for writers that need a file name (e.g. Parquet)."""
        target = self.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        return Path(tmp)

    def commit_temp(self, tmp: Path, relative: str) -> Path:
        target = self.path(relative)
        os.replace(tmp, target)
        return target

    def write_bytes(self, relative: str, data: bytes) -> Path:
        with self.open_atomic(relative, "wb") as fh:
            fh.write(data)
        return self.path(relative)

    def write_json(self, relative: str, obj: Any) -> Path:
        return self.write_bytes(relative, json.dumps(obj, ensure_ascii=False, allow_nan=False).encode())

    def read_json(self, relative: str) -> Any:
        return json.loads(self.path(relative).read_bytes())

    def delete(self, relative: str) -> None:
        target = self.path(relative)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with suppress(OSError):
                target.unlink()

