"""Reading a Maildir that strangers write to: the unsubscribe address's and the bounce address's.

Both `inbound.py` (mailto unsubscribes) and `bounces/mailbox.py` (delivery reports)
take each message out of new/, oldest first, read it only when it is a regular
file of bounded size, and move it out of new/ when done: to cur/ or to a
Maildir++ subfolder (`root/.name/`, with its own cur/ new/ tmp/ and the
`maildirfolder` mark, so a mail client shows it as a folder). Nothing is deleted.
"""

from __future__ import annotations

import os
from pathlib import Path

from newsletter.errors import InputError
from newsletter.input_files import open_regular

POISON_FOLDER = ".poison"  # Maildir++ subfolder: messages that could not be read, never retried


def new_folder(root: Path) -> Path:
    """root/new; InputError when `root` is not a Maildir."""
    new = root / "new"
    if not new.is_dir():
        raise InputError(
            "not a Maildir (it has no new/ folder)",
            where=str(root),
            hint="point --maildir at the folder holding new/, cur/ and tmp/",
        )
    return new


def new_messages(new: Path) -> list[Path]:
    """The entries of new/ (not directories, not dot files), oldest first."""
    entries = []
    with os.scandir(new) as listing:
        for entry in listing:
            if entry.name.startswith(".") or entry.is_dir(follow_symlinks=False):
                continue
            try:
                entries.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
            except FileNotFoundError:  # taken by another run meanwhile
                continue
    return [new / name for _, name in sorted(entries)]


def read_message(entry: Path, limit: int) -> bytes:
    """The bytes of one file of new/: a regular file (not a link or FIFO) of at most `limit`.

    Raises InputError (or OSError) saying why it cannot be read.
    """
    with open_regular(
        entry, limit=limit, what="a message", fix="only mail belongs in new/", follow_symlinks=False
    ) as handle:
        return handle.read()


def subfolder(root: Path, name: str) -> Path:
    """root/<name>/cur, created as a Maildir++ folder a mail client can open (`name`: `.x`)."""
    folder = root / name
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "maildirfolder").touch(exist_ok=True)
    return folder / "cur"


def move_out_of_new(entry: Path, folder: Path, flags: str = "") -> Path:
    """Move a message of new/ into `folder` (a cur/) as `<name>:2,<flags>`; where it is now."""
    target = folder / f"{entry.name.split(':', 1)[0]}:2,{flags}"
    try:
        os.replace(entry, target)
    except OSError as exc:
        raise InputError(
            f"cannot move {entry.name} out of new/: {exc.strerror or exc}",
            where=str(entry),
            hint="check that this user may write to the Maildir's folders",
        ) from None
    return target
