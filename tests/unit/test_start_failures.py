"""What a failed start says (daemon/app.py ``_start_failure``, errors.py ``FileFailed``): an
OSError on a file names the file and the reason, whatever step met it; a socket's is left as
it is; a bug keeps its traceback."""

from __future__ import annotations

import errno
import os

from daemon.app import _start_failure
from daemon.errors import FileFailed, PortInUse


def test_an_os_error_on_a_file_names_it_and_the_reason() -> None:
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/daemon.json")
    error = _start_failure(exc)
    assert isinstance(error, FileFailed) and error.__cause__ is exc
    assert str(error) == "cannot use /data/daemon.json: No space left on device"
    assert (error.path, error.reason) == ("/data/daemon.json", "No space left on device")


def test_a_write_that_names_no_file_is_said_about_the_file_written() -> None:
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what os.pwrite raises
    assert exc.filename is None
    error = FileFailed.from_os_error(exc, "write", "/data/syncd.lock")
    assert str(error) == "cannot write /data/syncd.lock: No space left on device"


def test_a_path_that_is_not_utf8_is_said_escaped() -> None:
    exc = OSError(errno.EIO, os.strerror(errno.EIO), b"/data\xff/syncd.lock")
    assert str(FileFailed.from_os_error(exc, "use")) == (
        "cannot use /data\\xff/syncd.lock: Input/output error"
    )


def test_other_failures_are_left_as_they_are() -> None:
    socket_error = OSError(errno.EACCES, "error while attempting to bind on address")
    assert _start_failure(socket_error) is socket_error
    in_use = PortInUse(7749)
    assert _start_failure(in_use) is in_use
    assert _start_failure(RuntimeError("a bug")) is None
