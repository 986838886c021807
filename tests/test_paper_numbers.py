"""The transcribed numbers of spanlib.reporting.paper_numbers: their structure always, and every row of Tables
I-VIII and section IV-G against the paper's text when a copy of it is present (the paper is not
part of the repository: ../shared/paper/span_paper.md from the repository root, or the file named
by $SPAN_PAPER_MD)."""

import os
import re
from pathlib import Path

import pytest

from spanlib.reporting.paper_numbers import PAPER_TABLES, SECTION_IV_G, TABLES, Metric, paper_rows
from spanlib.bench.profile import paper_profile_table, profile_table

ROOT = Path(__file__).resolve().parents[1]
PAPER = Path(os.environ.get("SPAN_PAPER_MD") or ROOT / ".." / "shared" / "paper" / "span_paper.md")


@pytest.fixture(scope="module")
def paper_text() -> str:
    if not PAPER.is_file():
        pytest.skip(f"the paper's text is not at {PAPER} (set SPAN_PAPER_MD to check the transcription)")
    return PAPER.read_text(encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    """Table name -> its caption and body (up to the next table or heading)."""
    marks = list(re.finditer(r"^TABLE ([IVX]+)\s*$", text, flags=re.M))
    out = {}
    for mark in marks:
        rest = text[mark.end():]
        stop = re.search(r"^(TABLE [IVX]+\s*$|#)", rest, flags=re.M)
        out[mark.group(1)] = rest[: stop.start() if stop else len(rest)]
    return out


def _clean(cell: str) -> str:
    return re.sub(r"</?(b|sub|sup|math)>", "", cell).strip()


def _number(cell: str):
    cell = _clean(cell)
    if cell == "-":
        return None
    return float(cell)


def _table_rows(section: str) -> list[tuple[str, list]]:
    """(first cell, numbers) for each markdown row whose other cells are all numbers or '-'."""
    rows = []
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c for c in line.strip().strip("|").split("|")]
        first, rest = _clean(cells[0]), cells[1:]
        try:
            values = [_number(c) for c in rest]
        except ValueError:
            continue
        if any(v is not None for v in values):
            rows.append((first, values))
    return rows


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _metric_tokens(caption_and_body: str) -> str:
    """'NME<sub>ip</sub>', '$AUC_{box}^7$', 'FR <sub>ip</sub> <sup>10</sup>' -> 'NMEip', 'AUCbox7', 'FRip10'."""
    text = re.sub(r"</?(b|sub|sup|math)>", "", caption_and_body)
    return re.sub(r"[\s${}_^]", "", text)


# ------------------------------------------------------------------ structure (no paper needed)
def test_every_table_is_transcribed_and_well_formed():
    assert set(PAPER_TABLES) == set(TABLES)
    for name, table in PAPER_TABLES.items():
        assert table.rows, name
        assert paper_rows(name) == list(table.rows)
        for row in table.rows:
            assert len(row.values) == len(table.columns), (name, row.method)
            assert any(v is not None for v in row.values), (name, row.method)
            assert all(v is None or 0 <= v <= 100 for v in row.values), (name, row.method)
        for column in table.columns:
            assert (column.metric.threshold is None) == (column.metric.kind == "nme")


def test_metric_protocols_follow_the_captions():
    names = lambda t: [c.metric.name for c in PAPER_TABLES[t].columns]  # noqa: E731
    assert names("I") == ["NME_io"] * 3 + ["NME_ip"] * 3
    assert names("II") == ["NME_box"] * 3 + ["AUC_box@0.07"] * 3          # AUC_box^7: 7 %
    assert names("III") == ["NME_diag", "NME_diag", "NME_box", "AUC_box@0.07"]
    assert names("IV") == ["NME_ip", "FR_ip@0.1"]                          # FR_ip^10: 10 %
    assert names("V") == ["NME_io"] * 7
    assert names("VI") == ["NME_ip"] * 3
    assert names("VII") == names("VIII") == ["NME_io"]
    assert Metric("auc", "box", 0.07).threshold_key == "0.07"


def test_own_rows_map_to_our_variants():
    t3 = PAPER_TABLES["III"]
    assert [r.variant for r in t3.rows if r.own] == ["shn", "shn_bali", "shn_scpa", "scpan", "semi_scpan"]
    assert t3.value("SCPAN", 0) == 1.31 and t3.value("KDN", 0) is None
    assert PAPER_TABLES["I"].value("semi-SCPAN", 5, group="NME_ip comparisons") == 3.52


# ------------------------------------------------------------------ against the paper's text
@pytest.mark.parametrize("name", ["I", "II", "III", "IV", "V", "VI"])
def test_tables_match_the_paper(paper_text, name):
    section = _sections(paper_text)[name]
    printed = _table_rows(section)
    table = PAPER_TABLES[name]
    assert len(printed) == len(table.rows), [p[0] for p in printed]
    for (cell, values), row in zip(printed, table.rows):
        squashed = _squash(cell)
        assert _squash(row.method) in squashed, (cell, row.method)
        if row.venue:
            assert _squash(row.venue) in squashed, (cell, row.venue)
        if row.ref is not None:
            assert f"[{row.ref}]" in squashed, (cell, row.ref)
        if row.group == "NME_ip comparisons":  # Table I: the ip group fills the last three columns
            assert row.values[:3] == (None,) * 3 and list(row.values[3:]) == values, row.method
        elif name == "I":
            assert row.values[3:] == (None,) * 3 and list(row.values[:3]) == values, row.method
        else:
            assert list(row.values) == values, (name, row.method)


def test_table_vii_matches_the_paper(paper_text):
    section = _sections(paper_text)["VII"]
    nme = next(values for cell, values in _table_rows(section) if cell == "NME")
    assert [r.values[0] for r in PAPER_TABLES["VII"].rows] == nme
    settings = [r.setting for r in PAPER_TABLES["VII"].rows]
    printed = re.search(r"^\|\s*\|\s*-\s*\|(.*)\|\s*$", section, flags=re.M).group(1)
    params = [tuple(c.strip().split("=")) for c in printed.split("|")]
    assert [(k, float(v)) for k, v in params] == [("d", s["d"]) if "d" in s else ("df", s["df"]) for s in settings[1:]]


def test_table_viii_matches_the_paper(paper_text):
    printed = _table_rows(_sections(paper_text)["VIII"])
    rows = PAPER_TABLES["VIII"].rows
    assert len(printed) == len(rows)
    for (first, values), row in zip(printed, rows):
        s = row.setting
        assert [float(first)] + values == [s["lambda1"], s["eta"], s["lambda2"], s["gamma"], row.values[0]]


@pytest.mark.parametrize("name", TABLES)
def test_column_metrics_are_in_the_caption(paper_text, name):
    """Each column's metric, normalisation and threshold are written in the paper's table."""
    tokens = _metric_tokens(_sections(paper_text)[name])
    for column in PAPER_TABLES[name].columns:
        m = column.metric
        token = f"{m.kind.upper()}{m.norm}" + ("" if m.threshold is None else f"{round(100 * m.threshold)}")
        if name == "VIII" and m.name == "NME_io":
            token = "NMEi0"  # printed NME_{i_0}: our reading is NME_io
        if name in ("VII", "VIII"):
            assert "CHALLENGINGSUBSET" in tokens.upper()
        assert token in tokens, (name, token)


def test_section_iv_g_matches_the_paper(paper_text):
    start = paper_text.index("**Time and memory analysis.**")
    paragraph = paper_text[start: paper_text.index("\n\n", start)]
    sentences = re.split(r"(?<=\.)\s+(?=[A-Z])", paragraph)
    shn, scpan, small = SECTION_IV_G

    def sentence_with(*needles):
        return [s for s in sentences if all(n in s for n in needles)]

    assert sentence_with("baseline", f"{shn.params_m:.2f}MB", f"{shn.size_mb:g}MB")
    assert sentence_with("SCPAN", f"{scpan.params_m:.2f}MB", f"{scpan.size_mb:g}MB")
    assert sentence_with(f"{scpan.fps:g}FPS", "V100", f"SHN achieves {shn.fps:g}FPS")
    assert sentence_with(f"{small.params_m:.2f}MB", f"{small.size_mb:g}MB")
    assert sentence_with(f"from {scpan.nme_io_challenging:.2f}% to {small.nme_io_challenging:.2f}%")


# ------------------------------------------------------------------ the profile table
def test_profile_table_shows_section_iv_g_beside_ours():
    entry = {"variant": "scpan", "input_size": 256, "model": {"stages": 4, "width": 256, "depth": 4},
             "params": 14_500_000, "size_mb": 14_500_000 * 4 / 2**20, "gflops": 50.0}
    result = {"device": "cpu (2 threads)", "torch": "x", "default": [], "paper": [entry],
              "settings": {"timing": "t", "seconds_per_timing": 1.0}}
    text = profile_table(result)
    assert "size (MiB, float32 state)" in text and "size (MB)" not in text
    assert "| ours: paper (T=4, w=256, d=4) | scpan |" in text
    line = next(l for l in text.splitlines() if l.startswith("| paper: SCPAN (three"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:8] == ["16.99", "195", "186.0", "64.8", "40", "4.43", "14.50 (scpan)"]
    assert "model size as printed (MB)" in text and "MiB if 1 MB = 10^6 B" in text
    assert "| paper: SHN (four" in paper_profile_table() and "8.73" in paper_profile_table()


def test_metric_names_with_an_at_do_not_autolink_in_markdown():
    """JupyterLab's markdown renderer reads `FR_io@0.1` as an e-mail address: tables put such
    names in backticks (their header text, CSV and JSON keep the plain name)."""
    from spanlib.reporting.paper_numbers import no_autolink
    from spanlib.reporting.report import markdown_table

    assert no_autolink("300W test AUC_box@0.07 (%)") == "300W test `AUC_box@0.07` (%)"
    assert no_autolink("`FR_io@0.1`") == "`FR_io@0.1`" and no_autolink("NME_io") == "NME_io"
    table = markdown_table(["method", "FR_io@0.1 full (%)"], [["shn", "1.0"]])
    assert "| `FR_io@0.1` full (%) |" in table and " FR_io@0.1" not in table
