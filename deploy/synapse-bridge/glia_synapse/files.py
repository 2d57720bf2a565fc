"""Reading the small files a config names (tokens, secrets, glia's config): each must be a
regular file and is read up to a cap, so a path to `/dev/zero`, a FIFO or a runaway log fails
at once instead of hanging the process or filling its memory. The bridge and the Python host
read every named file through here, as glia's Rust parts do through `glia_module_api::files`.
"""

from __future__ import annotations

import os
import stat

#: The largest file a setting names (a token, a secret).
MAX_NAMED_FILE = 1 << 20
#: The largest config file read.
MAX_CONFIG_FILE = 16 << 20


def read_text(path: str | os.PathLike[str], limit: int = MAX_NAMED_FILE) -> str:
    """The UTF-8 text of the regular file at `path`, if it holds at most `limit` bytes.

    Raises `OSError` (with `strerror` saying what is wrong) otherwise."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file", str(path))
        chunks: list[bytes] = []
        left = limit + 1  # one byte past the cap tells a file at the cap from a larger one
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise OSError(0, f"larger than {limit} bytes", str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise OSError(0, f"not UTF-8 text: {e}", str(path)) from e
