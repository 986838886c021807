"""One module per dataset format. Each defines ``SPLITS`` (the split names it knows) and
``read(root, split) -> ReadResult``; ``spanlib.data.sources`` is the public entry point."""

from __future__ import annotations

from typing import NamedTuple

from ..sample import Sample


class ReadResult(NamedTuple):
    samples: list[Sample]
    missing: list[str]  # official parts of the split that were not found under the root
