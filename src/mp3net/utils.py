"""Small shared helpers: the user-facing error type, atomic file writes and seed derivation."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


class MP3NetError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits with code 1."""


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (a base seed, a rank, a step, ...) by numpy's SeedSequence.

    Different tuples give statistically independent seeds, the same tuple always the same seed; every
    seeded stream of the project (data batches, trainer generators) is derived this way, so a resumed
    run re-derives exactly the streams it had.
    """
    import numpy as np  # here, not at the top: `mp3net --help` imports this module

    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name if empty), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def plain_permissions(path: Path) -> None:
    """Give ``path`` the permissions a plain ``open()`` or ``mkdir()`` would have under the umask (mkstemp
    and mkdtemp create 0600 / 0700, and some writers, safetensors among them, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, give it plain permissions and rename it to ``final``: the last step of every atomic
    write."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    plain_permissions(tmp)
    os.replace(tmp, final)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A crash (or kill -9) at any point leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        publish(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve large blocks from its heap and keep what is freed for reuse.

    By default glibc maps every block over 32 MiB fresh from the kernel and unmaps it on free, so each
    new activation tensor of a big model costs a page fault per 4 KiB page (the kernel zeroes it): on a
    95 s D step that is about a quarter of the time. With mmap off and trimming off, freed blocks are
    reused; the process's resident memory then stays at its peak, which for a training process is what
    it needs anyway. No effect (returns False) where the C library is not glibc.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # -1 as the trim threshold becomes SIZE_MAX inside glibc: never give the heap's top back
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
