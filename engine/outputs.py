"""Output files of a run: the error raised when one cannot be written, and the lock that keeps
two runs from writing the same file (used by the keypoints file and the annotated video)."""
from __future__ import annotations

from pathlib import Path


class RecordingError(RuntimeError):
    """An output file that cannot be created or written (one-line message)."""


class OutputLock:
    """Exclusive locks on output files, so that two runs never write the same file.

    Each path gets a lock file ``.<name>.lock`` in its folder (:class:`filelock.FileLock`,
    ``flock`` on POSIX: the lock goes away with the process, even a killed one). Acquiring
    does not wait: if another process holds a lock, :class:`RecordingError` names the file.
    Creating the lock file also proves early that the folder can be written. The lock files
    are removed on :meth:`release`.

    Args:
        paths: the output files (None entries are skipped).
    Raises:
        RecordingError: a file is being written by another run, or its folder cannot be written.
    """

    def __init__(self, paths):
        from filelock import FileLock, Timeout

        self._locks = []
        try:
            for path in paths:
                if path is None:
                    continue
                path = Path(path)
                lock_path = path.with_name(f".{path.name}.lock")
                lock = FileLock(str(lock_path), timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    raise RecordingError(f"{path} is being written by another run (lock {lock_path}); "
                                         "choose another output or wait for it to finish") from None
                except OSError as e:
                    raise RecordingError(f"cannot write {path}: {e.strerror or e}") from None
                self._locks.append((lock, lock_path))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Release every lock and remove the lock files (idempotent)."""
        locks, self._locks = self._locks, []
        for lock, lock_path in reversed(locks):
            try:
                lock_path.unlink()   # while still held, so no other run holds an unlinked file
            except OSError:
                pass
            lock.release()

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
