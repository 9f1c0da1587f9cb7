import os
import stat

import numpy as np
import pytest

from keras_idim.utils.io import (
    atomic_write,
    check_target,
    header_npz,
    read_header_npz,
    staged,
)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Sets the umask for a test, and restores it afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def test_atomic_write_text_and_bytes(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo")
    assert (tmp_path / "a.txt").read_bytes() == "héllo".encode()
    atomic_write(tmp_path / "sub" / "b.bin", b"\x00\x01")  # creates the folder
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write(str(tmp_path / "a.txt"), "replaced")
    assert (tmp_path / "a.txt").read_text() == "replaced"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "sub"]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_files_honour_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write(tmp_path / "f.txt", "x")
    assert mode(tmp_path / "f.txt") == expected
    with staged(tmp_path / "folder") as tmp:
        os.mkdir(tmp)
    assert mode(tmp_path / "folder") == 0o777 & ~mask  # 0o755 or 0o700


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp(
    tmp_path, monkeypatch
):
    atomic_write(tmp_path / "r.json", "old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "r.json", "new")
    monkeypatch.undo()
    assert (tmp_path / "r.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_staged_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="half way"):
        with staged(tmp_path / "out.txt") as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("half way")
    assert os.listdir(tmp_path) == []


def test_staged_replaces_a_folder_and_keeps_it_on_failure(tmp_path):
    target = tmp_path / "model"
    with staged(target) as tmp:
        os.mkdir(tmp)
        open(os.path.join(tmp, "v1"), "w").close()
    with pytest.raises(RuntimeError):
        with staged(target) as tmp:
            os.mkdir(tmp)
            raise RuntimeError("export failed")
    assert os.listdir(target) == ["v1"]
    with staged(target) as tmp:
        os.mkdir(tmp)
        open(os.path.join(tmp, "v2"), "w").close()
    assert os.listdir(target) == ["v2"]
    assert os.listdir(tmp_path) == ["model"]


def test_check_target(tmp_path):
    path = tmp_path / "new" / "m.npz"
    assert check_target(path, overwrite=False) == str(path)
    assert (tmp_path / "new").is_dir()  # its folder is created
    path.write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"`path` already exists.*overwrite=True"):
        check_target(path, overwrite=False)
    assert check_target(path, overwrite=True) == str(path)
    with pytest.raises(FileExistsError, match=r"^`out` already exists"):
        check_target(path, False, arg="out")


@pytest.mark.parametrize("path", ["", None, 3, b"bytes"])
def test_check_target_bad_path(path):
    with pytest.raises(ValueError, match=r"`path` should be a file path\. Received"):
        check_target(path, overwrite=False)


def test_check_target_bad_overwrite_and_folder(tmp_path):
    with pytest.raises(ValueError, match=r"Received: `overwrite=1`"):
        check_target(tmp_path / "x", overwrite=1)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match=r"Cannot create the folder.*file/sub"):
        check_target(tmp_path / "file" / "sub" / "x", overwrite=False)


def test_staged_never_puts_a_file_in_place_of_a_folder(tmp_path):
    target = tmp_path / "kept"
    target.mkdir()
    (target / "data.txt").write_text("mine")
    with pytest.raises(IsADirectoryError, match=r"kept.*is a folder"):
        with staged(target) as tmp:
            open(tmp, "w").close()
    assert (target / "data.txt").read_text() == "mine"
    assert os.listdir(tmp_path) == ["kept"]


def test_header_npz_files_say_their_format_and_version():
    header = {"format": "keras_idim.test", "format_version": 1}
    read, arrays = read_header_npz(header_npz(header, {"a": np.arange(3)}))
    assert read == header and arrays["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"header needs \['format_version'\]"):
        header_npz({"format": "keras_idim.test"}, {})
