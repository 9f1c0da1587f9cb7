"""Fastfood's P, bit for bit, for each version: every stored tensor
(signs, permutation, Gaussians, row scales, block scales) against the
dtype, shape and SHA-256 that `tests/fixtures/fastfood_p/make_fixture.py`
wrote with the code before the projection was split into modules."""

import hashlib
import json
import pathlib

import pytest

from keras_idim.projections import FastfoodProjection, fastfood, kernel

FIXTURE = (
    pathlib.Path(__file__).parent.parent / "fixtures" / "fastfood_p" / "digests.json"
)
DIGESTS = json.loads(FIXTURE.read_text(encoding="utf-8"))
FIELDS = ("signs", "permutation", "gauss", "row_scale", "block_scale")


def described(tensor) -> str | None:
    if tensor is None:
        return None
    a = tensor.numpy()
    return f"{a.dtype} {list(a.shape)} {hashlib.sha256(a.tobytes()).hexdigest()}"


@pytest.mark.parametrize("setting", ["0", "auto"])
@pytest.mark.parametrize("key", list(DIGESTS))
def test_p_is_drawn_bit_for_bit_as_before(key, setting, monkeypatch):
    monkeypatch.setenv(kernel.ENV, setting)
    full_dim, dim, seed, blocks, build_chunk, pass_chunk, version = key.split("-")
    if build_chunk != "None":
        monkeypatch.setattr(fastfood, "BUILD_CHUNK", int(build_chunk))
    if pass_chunk != "None":
        monkeypatch.setattr(fastfood, "PASS_CHUNK", int(pass_chunk))
    p = FastfoodProjection(
        int(full_dim), int(dim), seed=int(seed), blocks=blocks, version=int(version)
    )
    for name in FIELDS:
        assert described(getattr(p, name)) == DIGESTS[key][name], name
