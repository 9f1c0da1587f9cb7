"""Where the pieces of a product over pieces fall in Fastfood's groups of
blocks (`fastfood_ops.OpsBackend`): pure Python, made once when a product's
graph is made."""

from __future__ import annotations


def segments(sizes: list[int], group_size: int, num_groups: int) -> list[list]:
    """Where consecutive pieces of `sizes` rows fall in groups of
    `group_size` rows: for each group c, its `(piece, start in the piece,
    start in the group, rows)`, in row order (an empty piece has none)."""
    out: list[list] = [[] for _ in range(num_groups)]
    row = 0
    for t, n in enumerate(sizes):
        start = 0
        while start < n:
            c, offset = divmod(row + start, group_size)
            rows = min(n - start, group_size - offset)
            out[c].append((t, start, offset, rows))
            start += rows
        row += n
    return out


def said_layout(parts: list, length: int, blocks: int, none: int) -> tuple:
    """How a group's rows `parts` (`segments`) go to
    `OpsBackend.said_group`: `(kept, owner, extra)`. Each of the group's
    `blocks` blocks of `length` rows belongs to the first piece with rows
    in it (`owner`: its index, or `none` for a block of no piece); `kept`:
    the parts, `(piece, start, offset, rows)`, that stay in the group's
    rows; `extra`: each other piece's rows in a block, `(piece, start,
    block, offset in the block, rows)`, moved to an extra row of their own.
    """
    owner, kept, extra = [none] * blocks, [], []
    for t, start, offset, rows in parts:
        b, within = divmod(offset, length)
        if within:  # a piece that starts inside a block: not its first
            k = min(rows, length - within)
            extra.append((t, start, b, within, k))
            start, offset, rows = start + k, offset + k, rows - k
        if rows:
            kept.append((t, start, offset, rows))
            for b in range(offset // length, (offset + rows - 1) // length + 1):
                owner[b] = t
    return kept, owner, extra


def without_taken(table: list, dense: list) -> list:
    """Each group's parts (`segments`) less those of the pieces taken as
    rows (`None` in `dense`, `fastfood_rows`): zero in the groups."""
    return [[q for q in parts if dense[q[0]] is not None] for parts in table]
