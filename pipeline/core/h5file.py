"""Writing an HDF5 file so that a failed write is an error naming it, never a crash."""
from __future__ import annotations

import contextlib
from pathlib import Path

import h5py

from pipeline.core.fileio import atomic_write


@contextlib.contextmanager
def new_h5(out: str | Path):
    """An HDF5 file to fill, written under a temporary name and renamed to ``out`` when
    whole; a write that fails (a full disk) is raised, naming ``out``, once HDF5 has
    closed the file."""
    with atomic_write(out) as tmp:
        file = KeptWriteError(tmp)
        with file.file, h5py.File(file, "w", libver="earliest", track_order=False) as h5:
            yield h5
        if file.error is not None:  # HDF5 has closed the file: now it may be said
            raise file.error


class KeptWriteError:
    """The file HDF5 writes through (its ``fileobj`` driver), which keeps HDF5 from seeing a
    write fail: HDF5 cannot close a file it failed to write (h5py then crashes the process).
    The first OSError (a full disk) is kept in ``error`` and the writes after it dropped."""

    def __init__(self, path: Path):
        self.file, self.error = open(path, "w+b", buffering=0), None

    def _keep(self, action, *args):
        if self.error is None:
            try:
                return action(*args)
            except OSError as e:
                self.error = e

    def write(self, data) -> int:
        view = memoryview(data)
        while len(view) and self.error is None:  # a raw file may write part of it
            view = view[self._keep(self.file.write, view) or 0:]
        return len(data)

    def read(self, size: int) -> bytes:  # after a failed write, what was dropped reads as zeros
        data = self.file.read(size)
        return data.ljust(size, b"\0") if self.error is not None else data

    def truncate(self, size: int) -> None:
        self._keep(self.file.truncate, size)

    def __getattr__(self, name):  # seek, tell, flush
        return getattr(self.file, name)
