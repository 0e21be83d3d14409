"""Opening files that come from outside: regular files only, never blocking, never endless.

A path an operator types, or a name found in an articles folder or a Maildir,
may be a named pipe (opening it waits for a writer for ever), /dev/zero or
/dev/urandom (reading never ends), a socket, a terminal, or a device whose
open() has effects. Every reader of outside files opens them here:

    open_regular(path, limit=..., what=...)   a binary file object, or RefusedFileError

The path is checked with stat() before it is opened (a device is never even
opened), opened with O_NONBLOCK (a FIFO swapped in at that moment cannot block
the open), and checked again with fstat() on what was really opened. Reading
past `limit` bytes raises, so a file that keeps growing cannot get past the
reader's size limit either. The errors name the file and the fix in one line.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

from newsletter.errors import InputError


class RefusedFileError(InputError):
    """The path is not a regular file, or holds more than its reader accepts."""


def open_regular(
    path: Path, *, limit: int, what: str, fix: str, follow_symlinks: bool = True
) -> BinaryIO:
    """Open `path` for reading, only if it is a regular file of at most `limit` bytes.

    `what` names the file for the messages ("an article file"), `fix` is the
    hint when it is not a regular file ("save the list as a file"). With
    `follow_symlinks=False` a symbolic link is refused like a FIFO (a Maildir
    never holds links; one there points somewhere it should not). Raises
    RefusedFileError, or OSError when the file cannot be opened at all. The
    returned file is seekable; reading beyond `limit` raises RefusedFileError.
    """
    where = str(path)
    hint = fix
    mode = (os.stat if follow_symlinks else os.lstat)(path).st_mode
    if not stat.S_ISREG(mode):
        raise RefusedFileError(f"is {_kind(mode)}, not a regular file", where=where, hint=hint)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):  # swapped between stat() and open()
            raise RefusedFileError(
                f"is {_kind(status.st_mode)}, not a regular file", where=where, hint=hint
            )
        if status.st_size > limit:
            raise RefusedFileError(
                f"is too large ({status.st_size:,} bytes; {what} is at most {_size(limit)})",
                where=where,
                hint="is this the right file?",
            )
        return io.BufferedReader(_Bounded(fd, limit, where, what))
    except BaseException:
        os.close(fd)
        raise


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device (like /dev/zero or a terminal)"),
    (stat.S_ISBLK, "a block device (a disk)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
)


def _kind(mode: int) -> str:
    """What a person would call a file that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def _size(limit: int) -> str:
    mb = 1024 * 1024
    return f"{limit // mb} MB" if limit % mb == 0 else f"{limit:,} bytes"


class _Bounded(io.RawIOBase):
    """A file descriptor that refuses to be read past `limit` (the file grew after fstat)."""

    def __init__(self, fd: int, limit: int, where: str, what: str) -> None:
        super().__init__()
        self._fd = fd
        self._limit = limit
        self._where = where
        self._what = what
        self.name = where

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = os.readv(self._fd, [buffer])
        if count and os.lseek(self._fd, 0, os.SEEK_CUR) > self._limit:
            raise RefusedFileError(
                f"grew past {_size(self._limit)} while it was read "
                f"({self._what} is at most {_size(self._limit)})",
                where=self._where,
                hint="is something still writing it? wait until it is complete",
            )
        return count

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()
