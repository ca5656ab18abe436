"""SEAL objects to and from bytes through an anonymous in-memory file (``sealapi`` takes paths)."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol

# ``tenseal.sealapi`` saves and loads SEAL objects through file paths only. A memfd (an
# anonymous file that lives in memory, ``memfd_create(2)``) stands in for the path, so no key or
# ciphertext ever lands on a filesystem.


class SealObject(Protocol):
    """What ``sealapi`` objects (ciphertexts, keys, parameters) offer: files by path."""

    def save(self, path: str) -> None:
        """Write the object to ``path``."""
        ...


class MemoryFile:
    """An anonymous in-memory file standing in for the paths ``sealapi`` reads and writes.

    Use :func:`memory_file` (one per thread and process) rather than making one per call.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.fd = os.memfd_create("fedpriv-seal", os.MFD_CLOEXEC)
        self.path = f"/proc/self/fd/{self.fd}"
        # Closed with the object: threads that end (or a forked child's copy) leak nothing.
        weakref.finalize(self, os.close, self.fd)

    def dump(self, obj: SealObject) -> bytes:
        """``obj.save(path)``, returning the bytes; the file is emptied again at once."""
        try:
            obj.save(self.path)
            return os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        finally:
            os.ftruncate(self.fd, 0)

    def load(self, obj: Any, data: bytes, *context: object) -> None:
        """``obj.load([context,] path)`` from ``data`` (``obj``: any ``sealapi`` object)."""
        os.ftruncate(self.fd, 0)
        view, offset = memoryview(data), 0
        while offset < len(view):
            offset += os.pwrite(self.fd, view[offset:], offset)
        try:
            obj.load(*context, self.path)
        finally:
            os.ftruncate(self.fd, 0)


_local = threading.local()


def memory_file() -> MemoryFile:
    """The calling thread's :class:`MemoryFile` (one per thread and per process).

    A memfd inherited through ``fork`` would be shared with the parent, so a forked child
    opens its own.
    """
    file = getattr(_local, "file", None)
    if file is None or file.pid != os.getpid():
        file = _local.file = MemoryFile()
    return file
