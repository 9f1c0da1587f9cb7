"""A griffe extension for the API reference: Keras-style examples.

keras_idim's docstrings follow Keras: they end with an `Example:` title and,
below it, doctest lines that are not indented. Google style, which griffe
parses, wants a section's body indented under its title, or the lines render
as text, and it reads only `Examples:` as doctest code. This indents that
body under an `Examples:` title, in the docs only (never the source), so the
examples render as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_TITLE = re.compile(r"^Examples?:\s*$")


class KerasStyleExamples(griffe.Extension):
    """Indents the body of a final `Example:` section, titled `Examples:`."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        lines = docstring.value.split("\n")
        for i, line in enumerate(lines):
            if not _TITLE.match(line):
                continue
            body = lines[i + 1 :]
            while body and not body[0].strip():
                body.pop(0)
            if body and not body[0].startswith((" ", "\t")):
                indented = [("    " + b) if b.strip() else b for b in body]
                docstring.value = "\n".join([*lines[:i], "Examples:", *indented])
            return
