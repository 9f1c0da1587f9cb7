"""Writing files so that a reader, or a crash, never sees half of one.

`staged` is the one mechanism: write to a temporary path in the target's
folder, then move it onto the target in one step. A file or a folder written
this way gets the permissions the process's umask gives any new file, like
every other file keras_idim writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from keras_idim.utils.validation import check_bool, received


def check_target(
    path: Any, overwrite: bool, arg: str = "path", *, folder_marker: str | None = None
) -> str:
    """Checks that `path` can be written, before any work is done.

    Creates its folder if needed. A folder the library did not write is
    never replaced: a file target that is an existing folder is refused,
    even with `overwrite=True`, and so is a folder target (`folder_marker`
    given) that does not hold `folder_marker`.

    Args:
        path: str or PathLike. The file or folder to write.
        overwrite: bool. Whether an existing `path` may be replaced.
        arg: str. The argument's name, for the errors. Defaults to `"path"`.
        folder_marker: str or None. For a folder target: the file that
            marks a folder as one that this kind of writer made (e.g.
            `"saved_model.pb"`); `None` for a file target. Defaults to
            `None`.

    Returns:
        The path as a string.

    Raises:
        ValueError: `path` is not a path, or `overwrite` not a bool.
        IsADirectoryError: `path` is an existing folder that may not be
            replaced.
        FileExistsError: `path` exists and `overwrite` is `False`.
        OSError: its folder cannot be created or written into.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`{arg}` should be a file path. {received(arg, path)}")
    check_bool("overwrite", overwrite)
    path = os.fspath(path)
    if os.path.isdir(path):
        if folder_marker is None:
            raise IsADirectoryError(
                f"`{arg}` {path!r} is a folder; a file is written there, and a "
                "folder is never replaced. Choose a file path (e.g. inside it)."
            )
        if overwrite and not os.path.exists(os.path.join(path, folder_marker)):
            raise IsADirectoryError(
                f"`{arg}` {path!r} is a folder without {folder_marker}, so not "
                "one that an earlier export wrote: it is never replaced. "
                "Choose another path."
            )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"`{arg}` already exists: {path!r}. Pass `overwrite=True` to "
            "replace it, or choose another path."
        )
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OSError(
            f"Cannot create the folder of `{arg}={path!r}`: {e.strerror or e}"
        ) from None
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"Cannot write into the folder of `{arg}={path!r}`.")
    return path


def header_npz(header: Mapping, arrays: Mapping[str, Any]) -> bytes:
    """An `.npz` archive of `arrays` and of `header` as JSON (sorted keys),
    the bytes of the array "header": the layout of keras_idim's compact and
    run files.

    Raises:
        ValueError: `header` lacks the file's `format` tag or its
            `format_version`, which every such file carries.
    """
    missing = [k for k in ("format", "format_version") if k not in header]
    if missing:
        raise ValueError(f"A file's header needs {missing}. Received: {header!r}")
    text = json.dumps(dict(header), sort_keys=True).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, header=np.frombuffer(text, dtype=np.uint8))
    return buffer.getvalue()


def read_header_npz(raw: bytes) -> tuple[Any, dict[str, np.ndarray]]:
    """The header and the arrays of `header_npz`'s bytes.

    Raises:
        ValueError: not such an archive (corrupt or truncated), its message
            the error's type and text.
    """
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return json.loads(arrays.pop("header").tobytes().decode()), arrays
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None


def check_writable(path: str | os.PathLike, arg: str, *, folder: bool = False) -> None:
    """Checks, creating nothing, that `path` can be written.

    Args:
        path: str or PathLike. A file to write, or a folder to write into.
        arg: str. The argument's name, for the errors.
        folder: bool. Whether `path` is a folder. Defaults to `False`.

    Raises:
        ValueError: `path` is a file where a folder is wanted (or the
            reverse), or the nearest existing folder at or above it is not
            writable.
    """
    path = os.fspath(path)
    if os.path.exists(path) and os.path.isdir(path) != folder:
        what = "a file, not a folder" if folder else "a folder, not a file"
        raise ValueError(f"`{arg}` {path!r} exists and is {what}.")
    above = os.path.abspath(path if folder else os.path.dirname(os.path.abspath(path)))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above) or not os.access(above, os.W_OK | os.X_OK):
        raise ValueError(
            f"`{arg}` {path!r} cannot be written: {above!r} is not writable."
        )


@contextlib.contextmanager
def staged(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path`, moved onto `path` on success.

    The caller writes a file or a folder at the yielded path. On success it
    replaces `path` (an existing folder is moved aside first: a folder
    cannot be replaced in one step; a file never replaces a folder: that is
    an `IsADirectoryError`); on any failure the temporary file or
    folder is removed, so nothing half written ever appears at `path` and
    an existing `path` is kept. The folder of `path` is created if needed.

    Example:

    >>> with staged("out/report.txt") as tmp:
    ...     with open(tmp, "w") as f:
    ...         f.write("done")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".keras_idim-", dir=folder)
    # The same name as the target, so that writers that go by the suffix
    # (keras' `.keras`, NumPy's `.npz`) write the same format.
    tmp = os.path.join(staging, os.path.basename(os.path.abspath(path)))
    try:
        yield tmp
        if os.path.isdir(path) and not os.path.islink(path):
            if not os.path.isdir(tmp):  # a file never takes a folder's place
                raise IsADirectoryError(
                    f"{path!r} is a folder: a file is never written in its "
                    "place. Choose a file path."
                )
            os.replace(path, tmp + ".old")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write(path: str | os.PathLike, content: str | bytes) -> None:
    """Writes `content` to `path` atomically (see `staged`), synced to disk.

    Args:
        path: str or PathLike. The file to write.
        content: str (written as UTF-8) or bytes.
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    with staged(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
