"""Fastfood's version 1 of drawing P from its seed: keras_idim 0.1.0's.

`fastfood.FastfoodProjection` draws its random tensors as ranges of blocks,
each range from the streams that its `stream` names (`fastfood._draw`);
the versions differ in which ranges they draw and in how G and S are
stored. Version 1 draws every block in one range from the first streams,
so that drawing P takes several times the memory of P. Versions 2 (the
default below `fastfood.HALF_FROM` rows) and 3 (the default from there) are
in `fastfood`: version 2 draws the stacked blocks in groups, the groups
after the first from streams of their own, and gives version 1's P where
one group holds every block.

A configuration written without a version (keras_idim 0.1.0's) is drawn
as version 1 (`with_version`).
"""

from __future__ import annotations

from keras_idim.projections.fastfood_arrays import Draw

#: The version of a configuration that names none (keras_idim 0.1.0's).
UNVERSIONED = 1


def plan(num_blocks: int) -> list[Draw]:
    """Version 1's draws: every block at once, from the first streams."""
    return [Draw(0, num_blocks, ())]


def with_version(config: dict) -> dict:
    """`config` with `version`, `UNVERSIONED` where it names none."""
    return {"version": UNVERSIONED, **config}
