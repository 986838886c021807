"""The paper's published numbers (Wan et al., "Robust and Precise Facial Landmark Detection by
Self-Calibrated Pose Attention Network", IEEE T-Cybernetics 53(6), 2023; arXiv 2112.12328),
kept apart from ours so that a table never mixes them silently.

Only numbers checked against the paper's text belong here. While this study was written the
paper's tables could not be retrieved from any source available to us (the public pages we could
reach give only the abstract; third-party leaderboards quote a few numbers under unclear
normalisations), so no number is listed: every table's entry is empty, and ``spanlib report``
says "paper numbers: not transcribed" under each table instead of printing a guess.

To add numbers: fill ``PAPER_NUMBERS[table]`` with rows ``{"method": ..., "source": "Table N of
the paper", COLUMN: value in %}`` using the column names of ``spanlib.report`` for that table,
after checking them against the published PDF.
"""

from __future__ import annotations

PAPER_REFERENCE = ("J. Wan, H. Xi, J. Zhou, Z. Lai, W. Pedrycz, X. Wang, H. Sun. Robust and Precise Facial "
                   "Landmark Detection by Self-Calibrated Pose Attention Network. IEEE Transactions on "
                   "Cybernetics 53(6):3546-3560, 2023. doi:10.1109/TCYB.2021.3131569")

TABLES = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII")

# table -> list of rows; each row {"method": str, "source": str, column: value (%)}
PAPER_NUMBERS: dict[str, list[dict]] = {table: [] for table in TABLES}

NOT_TRANSCRIBED = ("paper numbers: not transcribed (the paper's tables could not be verified from "
                   "available sources; see spanlib/paper_numbers.py)")


def paper_rows(table: str) -> list[dict]:
    return list(PAPER_NUMBERS.get(table, []))
