"""Opening outside files: regular files only, never blocking, never past their limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.input_files import RefusedFileError, open_regular

OPTIONS = {"what": "a test file", "fix": "use a plain file"}


def test_a_regular_file_is_read_and_can_be_read_again(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"0123456789")
    with open_regular(path, limit=10, **OPTIONS) as handle:
        assert handle.read() == b"0123456789"
        handle.seek(0)
        assert handle.read(4) == b"0123"


def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path: Path) -> None:
    """fstat said 10 bytes; something keeps writing: reading stops at the limit."""
    path = tmp_path / "growing.log"
    path.write_bytes(b"x" * 10)
    with open_regular(path, limit=100, **OPTIONS) as handle:
        with path.open("ab") as writer:
            writer.write(b"y" * 1_000)
        with pytest.raises(RefusedFileError) as caught:
            handle.read()
    assert caught.value.where == str(path)
    assert caught.value.message == (
        "grew past 100 bytes while it was read (a test file is at most 100 bytes)"
    )


@pytest.mark.timeout(30)
def test_links_are_refused_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to(target)
    with open_regular(link, limit=10, **OPTIONS) as handle:
        assert handle.read() == b"data"
    with pytest.raises(RefusedFileError, match="is a symbolic link, not a regular file"):
        open_regular(link, limit=10, follow_symlinks=False, **OPTIONS)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(RefusedFileError, match=r"is a named pipe \(FIFO\)") as caught:
        open_regular(fifo, limit=10, **OPTIONS)
    assert caught.value.hint == "use a plain file"
