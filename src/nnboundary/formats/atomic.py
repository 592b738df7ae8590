"""The one atomic writer: every file the pipeline writes goes through :func:`atomic_path`, and
every folder through :func:`atomic_dir`.

A writer writes to a temporary entry beside its destination, and the entry is renamed into
place only when the write succeeded, so a killed job never leaves a half-written file that a
later step, or Snakemake, could take as a result.

A write that fails because the file system is full raises :class:`DiskFullError` naming the
file, the space left on its file system and what to do: free space, then run the same command
again (finished results are kept; Snakemake reruns only the jobs whose outputs are missing).
Without it a full disk shows as whatever the writing library says, e.g. torch's
``unexpected pos 644160 vs 644048``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import DiskFullError

#: errno values of a file system (or a quota) without room.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: A write that failed with an error naming no cause (a library's short-write check, e.g.
#: torch's writer given a path) is taken as a full disk when its file system has less than this
#: left.
LOW_SPACE_BYTES = 16 * 2**20


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes free for an ordinary user on the file system of ``path`` (its nearest existing
    folder); None when it cannot be read."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human_bytes(count: float | None) -> str:
    """``count`` bytes as a short text (``312 MB``, ``1.4 GB``); ``unknown`` for None."""
    if count is None:
        return "unknown"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} bytes"


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def no_space(err: BaseException, path: str | os.PathLike) -> bool:
    """Whether ``err``, raised while writing ``path``, comes from a full file system: an
    ``ENOSPC``/``EDQUOT`` anywhere in its chain, or (for an error that names no cause) a file
    system with less than :data:`LOW_SPACE_BYTES` left."""
    for cause in _chain(err):
        if isinstance(cause, OSError) and cause.errno in NO_SPACE:
            return True
        if "No space left on device" in str(cause) or "Disk quota exceeded" in str(cause):
            return True
    if isinstance(err, (OSError, RuntimeError)):
        free = free_bytes(Path(path).parent)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def disk_full(path: str | os.PathLike, err: BaseException) -> DiskFullError:
    """The error for a write of ``path`` that failed on a full file system."""
    folder = Path(path).absolute().parent
    return DiskFullError(
        f"cannot write {path}: the file system of {folder} is full "
        f"({human_bytes(free_bytes(folder))} free; {type(err).__name__}: {err}). Free space "
        f"there, or move the results to a larger disk, then run the same command again: "
        f"every finished file is kept and only the unfinished jobs run again")


def _ordinary_permissions(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create owner-only entries; give ``path`` the permissions an ordinary
    file (0666) or folder (0777) gets, less the umask, so others on a shared machine can read
    the results."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def _space_checked(path: Path) -> Iterator[None]:
    """Turn an error of the enclosed write of ``path`` into :class:`DiskFullError` when the file
    system is full (:func:`no_space`)."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if not isinstance(err, DiskFullError) and no_space(err, path):
            raise disk_full(path, err) from err
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds
    (module docstring; a full disk raises :class:`DiskFullError`)."""
    path = Path(path)
    tmp_path = None
    try:
        with _space_checked(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            yield tmp_path
            _ordinary_permissions(tmp_path, 0o666)
            os.replace(tmp_path, path)
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` (replacing an old one)
    only if the block succeeds, so a killed job never leaves a half-filled output folder."""
    path = Path(path)
    with _space_checked(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with _space_checked(path):
            yield tmp
            _ordinary_permissions(tmp, 0o777)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_with(path: str | os.PathLike, write) -> None:
    """Call ``write(handle)`` with a binary file open on the temporary path, atomically: a
    library that writes to a file object (``torch.save``, ``np.savez``) then reports a full disk
    as the operating system does (ENOSPC), not as its own short-write check."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
