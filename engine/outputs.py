"""Output files of a run: the error raised when one cannot be written, the lock that keeps two
runs from writing the same file (used by the keypoints file and the annotated video), the check
that an output is not an input, and the temporary files that replace an output atomically."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class StreamError(RuntimeError):
    """A live output (``--serve``, ``--osc``: engine.streaming, engine.osc) that cannot start: a
    bad host, the port in use; one-line message."""


NAME_MAX = 255
"""The longest file name (bytes) where the file system does not say (POSIX's and NTFS's limit)."""

TEMP_PREFIX = ".deeppose-tmp-"
"""How every temporary file we write beside an output starts (:func:`replaced_atomically`)."""


class RecordingError(RuntimeError):
    """An output file that cannot be created or written (one-line message)."""


def name_max(folder: str | Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes (:data:`NAME_MAX`
    where it cannot say)."""
    try:
        return int(os.pathconf(str(folder), "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):   # no such folder (yet), or no pathconf (Windows)
        return NAME_MAX


def _fit(name: str, limit: int) -> str:
    """``name`` cut (whole characters) to at most ``limit`` bytes in the file system's encoding."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def lock_path(path: str | Path) -> Path:
    """The lock file of the output file ``path``: ``.NAME.lock`` in its folder.

    When that name would be longer than the folder's file system allows (an output name within
    a few bytes of the limit), it is shortened and made unique by a hash of the whole name:
    ``.START~HASH.lock``, so that a name that fits as an output also fits as a lock.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    name = f".{path.name}.lock"
    limit = name_max(folder)
    if len(os.fsencode(name)) <= limit:
        return path.with_name(name)
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    return path.with_name(f".{_fit(path.name, min(limit, NAME_MAX) - 32)}~{digest}.lock")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two existing paths are the same file (a hard link, a symlink or another spelling
    of it count too), compared by file identity (device and inode), not by path text."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):   # one of them does not exist (yet)
        return False


def overwrite_problem(outputs: Iterable[tuple[str | Path | None, str]],
                      inputs: Iterable[str | Path]) -> str | None:
    """None, or one line saying which output would overwrite which input.

    Each output (a ``(path, what)`` pair, e.g. ``(out, "output video")``; None paths are
    skipped) and its lock file (:func:`lock_path`, created and removed while the output is
    written) are compared with every input by file identity (:func:`same_file`): the same
    path, another spelling of it, a hard link or a symlink. The ``video`` command and the app's
    recorder both refuse such an output with this line before they write anything.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    for path, what in outputs:
        if path is None:
            continue
        for candidate, kind in ((Path(path), what), (lock_path(path), f"lock file of the {what}")):
            for source in inputs:
                if same_file(candidate, source):
                    return f"{kind} {candidate} would overwrite the input {source} (the same file)"
    return None


def _new_file_mode() -> int:
    """The mode a newly created file gets here (0o666 less the umask; Linux says the umask in
    /proc without changing it, elsewhere it is set and put back)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def replaced_atomically(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Write a new version of ``path`` into a temporary file beside it, then replace ``path``.

    Yields the temporary file, created empty and exclusively by :func:`tempfile.mkstemp` in
    ``path``'s folder (so it is on the same file system, and it never is an existing file such
    as a user's ``NAME.tmp``): named ``.deeppose-tmp-NAME.XXXXXXXX`` + ``suffix`` (the name
    cut to fit the file system). When the block ends without an exception the file takes
    ``path``'s place (:func:`os.replace`, atomic) with ``path``'s mode, or a new file's;
    otherwise it is removed and ``path`` is left as it was. A failure to remove it is not
    raised over the original exception.

    Raises:
        OSError: the temporary file cannot be created (a read-only or missing folder), or the
            replacement failed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    # the name cut so that the whole temporary name fits (8 random characters follow the prefix)
    room = name_max(folder) - len(TEMP_PREFIX) - len(".") - 8 - len(os.fsencode(suffix))
    prefix = TEMP_PREFIX + _fit(path.name, max(0, min(120, room))) + "."
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class OutputLock:
    """Exclusive locks on output files, so that two runs never write the same file.

    Each path gets a lock file in its folder (:func:`lock_path`: ``.<name>.lock``;
    :class:`filelock.FileLock`, ``flock`` on POSIX: the lock goes away with the process, even a
    killed one). Acquiring does not wait: if another process holds a lock,
    :class:`RecordingError` names the file. Creating the lock file also proves early that the
    folder can be written. The lock files are removed on :meth:`release`.

    Args:
        paths: the output files (None entries are skipped).
    Raises:
        RecordingError: a file is being written by another run, or its lock file cannot be
            created (the message names the lock file and why).
    """

    def __init__(self, paths):
        from filelock import FileLock, Timeout

        self._locks = []
        try:
            for path in paths:
                if path is None:
                    continue
                path = Path(path)
                lock_file = lock_path(path)
                lock = FileLock(str(lock_file), timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    raise RecordingError(f"{path} is being written by another run (lock {lock_file}); "
                                         "choose another output or wait for it to finish") from None
                except OSError as e:
                    raise RecordingError(f"cannot write {path}: cannot create its lock file {lock_file}: "
                                         f"{e.strerror or e}") from None
                self._locks.append((lock, lock_file))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Release every lock and remove the lock files (idempotent)."""
        locks, self._locks = self._locks, []
        for lock, lock_file in reversed(locks):
            try:
                lock_file.unlink()   # while still held, so no other run holds an unlinked file
            except OSError:
                pass
            lock.release()

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def recording_outputs(video) -> list[tuple[Path, str]]:
    """The files a recording to ``video`` (the app's Record, ``--record``) writes, as
    ``(path, what)`` pairs: the annotated video and the keypoints beside it (same name,
    ``.jsonl``); none for None."""
    if video is None:
        return []
    video = Path(video)
    return [(video, "recording"), (video.with_suffix(".jsonl"), "recording's keypoints file")]
