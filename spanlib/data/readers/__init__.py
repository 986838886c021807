"""One module per dataset format. Each defines ``SPLITS`` (the split names it knows) and
``read(root, split) -> ReadResult``; ``spanlib.data.sources`` is the public entry point."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator, NamedTuple

from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError
from spanlib.utils.files import file_problem


class ReadResult(NamedTuple):
    samples: list[Sample]
    missing: list[str]  # official parts of the split that were not found under the root


def csv_rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, row) of a UTF-8 CSV file. A file that is not UTF-8 text, a field over the
    csv module's limit (128 KiB) or another CSV error is a DataError naming the file and line, not
    a traceback; a FIFO or other non-file is refused before it is opened (it would block)."""
    problem = file_problem(path)
    if problem:
        raise DataError(f"{path}: {problem} (expected a CSV file)")
    line_no = 0
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for row in reader:
                line_no = reader.line_num
                yield line_no, row
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); landmark CSV files are UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{line_no + 1}: not a readable CSV row ({exc})") from None
