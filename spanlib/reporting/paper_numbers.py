"""The paper's published numbers (Wan et al., "Robust and Precise Facial Landmark Detection by
Self-Calibrated Pose Attention Network", IEEE T-Cybernetics 53(6), 2023; arXiv 2112.12328),
kept apart from ours so that a table never mixes them silently.

Transcribed from the paper's text: Tables I-VIII and section IV-G ("Time and memory analysis").
``tests/test_paper_numbers.py`` checks every row against the paper's text when a copy is present.

Structure
---------
- ``Metric(kind, norm, threshold)``: ``kind`` "nme" / "fr" / "auc", ``norm`` "io" / "ip" / "box" /
  "diag" (as in ``spanlib.evaluation.metrics``), ``threshold`` a fraction of the normalising distance for FR
  and AUC (the paper's AUC_box^7 is ``Metric("auc", "box", 0.07)``, FR_ip^10 is
  ``Metric("fr", "ip", 0.1)``), None for NME.
- ``PaperColumn(dataset, subset, paper_header, metric)``: ``dataset`` as the paper names it,
  ``subset`` our subset tag for the same faces (``spanlib.data`` readers: "common", "challenging",
  "full", "test", "frontal", "pose", ..., "scenario1"), ``paper_header`` the paper's column header.
- ``PaperRow(method, values, venue, ref, own, variant, group, setting)``: ``method`` in the paper's
  wording (a "*" kept where printed), ``values`` one per column in % (None where the paper prints
  "-", "not counted"), ``venue`` and ``ref`` the subscript and citation number as printed (several
  citation numbers do not match the paper's reference list; they are kept as printed), ``own`` for
  the paper's own variants and experiments, ``variant`` our variant name for those, ``group`` Table
  I's row group, ``setting`` the hyperparameters of a Table VII / VIII row (SCPAN runs).
- ``PaperTable(name, caption, columns, rows, readings)``: ``caption`` a short summary (not the
  printed caption), ``readings`` how we read each ambiguity of that table.
- ``PAPER_TABLES``: "I" ... "VIII" -> PaperTable; ``SECTION_IV_G``: the time and memory figures.

All values are percentages as printed ("% omitted" in the captions), except section IV-G.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

PAPER_REFERENCE = ("J. Wan, H. Xi, J. Zhou, Z. Lai, W. Pedrycz, X. Wang, H. Sun. Robust and Precise Facial "
                   "Landmark Detection by Self-Calibrated Pose Attention Network. IEEE Transactions on "
                   "Cybernetics 53(6):3546-3560, 2023. doi:10.1109/TCYB.2021.3131569")

TABLES = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII")

# the paper's own variants -> ours (spanlib.config.variants.VARIANTS)
OWN_VARIANTS = {"SHN": "shn", "SHN+BALI": "shn_bali", "SHN+SCPA": "shn_scpa", "SCPAN": "scpan",
                "SCPAN*": "scpan", "semi-SCPAN": "semi_scpan"}


_AT_NAME = re.compile(r"(?<![`\w])([A-Za-z][\w]*@\d[\w.]*)(?![`\w])")


def no_autolink(text: str) -> str:
    """``text`` for a markdown cell, with every metric name holding an ``@`` (``FR_io@0.1``,
    ``AUC_box@0.07``) in backticks: GitHub-flavoured renderers (JupyterLab's included) otherwise
    read ``name@0.1`` as an e-mail address and show a mailto link."""
    return _AT_NAME.sub(r"`\1`", text)


@dataclass(frozen=True)
class Metric:
    kind: Literal["nme", "fr", "auc"]
    norm: Literal["io", "ip", "box", "diag"]
    threshold: float | None = None   # fraction of the normalising distance (0.07 = the paper's "7")

    @property
    def name(self) -> str:
        """"NME_io", "FR_ip@0.1", "AUC_box@0.07"."""
        if self.kind == "nme":
            return f"NME_{self.norm}"
        return f"{self.kind.upper()}_{self.norm}@{self.threshold:g}"

    @property
    def threshold_key(self) -> str | None:
        """The key of the threshold in a metrics JSON ("0.1", "0.07")."""
        return None if self.threshold is None else f"{self.threshold:g}"


@dataclass(frozen=True)
class PaperColumn:
    dataset: str        # as the paper names it: "300W", "Menpo 2D", "COFW-68", "AFLW", ...
    subset: str         # our subset tag for the same faces
    paper_header: str   # the paper's header of the column
    metric: Metric


@dataclass(frozen=True)
class PaperRow:
    method: str
    values: tuple[float | None, ...]
    venue: str | None = None
    ref: int | None = None
    own: bool = False
    variant: str | None = None
    group: str | None = None
    setting: dict | None = field(default=None, compare=False, hash=False)

    @property
    def label(self) -> str:
        """"PCD-CNN (CVPR18) [55]"; the paper's own rows by their name only."""
        text = self.method
        if self.venue:
            text += f" ({self.venue})"
        if self.ref is not None:
            text += f" [{self.ref}]"
        return text


@dataclass(frozen=True)
class PaperTable:
    name: str
    caption: str
    columns: tuple[PaperColumn, ...]
    rows: tuple[PaperRow, ...]
    readings: tuple[str, ...] = ()

    def value(self, method: str, column: int, group: str | None = None) -> float | None:
        """The value of the first row named ``method`` (in ``group`` when given)."""
        for row in self.rows:
            if row.method == method and (group is None or row.group == group):
                return row.values[column]
        raise KeyError(f"Table {self.name}: no row {method!r}" + (f" in group {group!r}" if group else ""))


def _row(method, venue, ref, *values, group=None, setting=None) -> PaperRow:
    own = setting is not None or (method in OWN_VARIANTS and venue is None and ref is None)
    variant = "scpan" if setting is not None else (OWN_VARIANTS.get(method) if own else None)
    return PaperRow(method, tuple(values), venue, ref, own, variant, group, setting)


def _own(method, *values, group=None) -> PaperRow:
    return _row(method, None, None, *values, group=group)


_ = None  # "-" in the paper: not counted

NME_IO, NME_IP, NME_BOX, NME_DIAG = (Metric("nme", n) for n in ("io", "ip", "box", "diag"))
AUC_BOX_7 = Metric("auc", "box", 0.07)
FR_IP_10 = Metric("fr", "ip", 0.1)

# ---------------------------------------------------------------------------------- Table I
_IO, _IP = "NME_io comparisons", "NME_ip comparisons"
_T1_SUBSETS = (("common", "Common Subset"), ("challenging", "Challenging Subset"), ("full", "Fullset"))


def _io(method, venue, ref, *v):
    return _row(method, venue, ref, *v, _, _, _, group=_IO)


def _ip(method, venue, ref, *v):
    return _row(method, venue, ref, _, _, _, *v, group=_IP)


TABLE_I = PaperTable(
    "I", "NME_io and NME_ip on 300W (common subset, challenging subset, fullset)",
    tuple(PaperColumn("300W", s, h, m) for m in (NME_IO, NME_IP) for s, h in _T1_SUBSETS),
    (
        _io("PCD-CNN", "CVPR18", 55, 3.67, 7.62, 4.44),
        _io("SAN", "CVPR18", 30, 3.34, 6.60, 3.98),
        _io("AVSi", "ICCV19", 56, 3.21, 6.49, 3.86),
        _io("LAB", "CVPR18", 14, 2.98, 5.19, 3.49),
        _io("Techei", "ICCV19", 35, 2.91, 5.91, 3.49),
        _io("DU-Net", "ECCV18", 59, 2.90, 5.15, 3.35),
        _io("DeCaFa", "ICCV19", 57, 2.93, 5.26, 3.39),
        _io("HR-Net", "19'", 50, 2.87, 5.15, 3.32),
        _io("HG-HSLE", "ICCV19", 60, 2.85, 5.03, 3.28),
        _io("AWing", "ICCV19", 61, 2.72, 4.52, 3.07),
        _io("LUVLi", "CVPR20", 12, 2.76, 5.16, 3.23),
        _io("CCDN", "NN21", 58, 2.75, 4.43, 3.08),
        _io("SHN", None, None, 3.11, 6.23, 3.72),
        _io("SHN+BALI", None, None, 2.78, 5.01, 3.21),
        _io("SHN+SCPA", None, None, 2.59, 4.68, 3.00),
        _io("SCPAN", None, None, 2.46, 4.43, 2.85),
        _io("semi-SCPAN", None, None, 2.38, 4.31, 2.76),
        _ip("Honari et al.", "CVPR18", 33, 4.20, 7.78, 4.90),
        _ip("SBR", "CVPR18", 34, 3.28, 7.58, 4.10),
        _ip("TS", "CVPR18", 35, 3.17, 6.41, 3.78),
        _ip("Liu et al.", "CVPR19", 31, 3.45, 6.38, 4.02),
        _ip("ODN", "CVPR19", 29, 3.56, 6.67, 4.17),
        _ip("STKI", "ACMMM20", 7, 3.36, 7.39, 4.16),
        _ip("MMDN", "TNNLS21", 15, 3.17, 6.08, 3.74),
        _ip("semi-SCPAN", None, None, 2.92, 5.96, 3.52),
    ),
    (
        "Section IV-A lists five normalising distances for four names (interpupil, interocular, outer "
        "eye corners, box, diagonal); we read NME_io as the outer-eye-corner distance and NME_ip as the "
        "distance between the eye centres (spanlib.evaluation.metrics).",
        "The table has two row groups (NME_io, NME_ip) over the same three columns; here they are six "
        "columns, each row filled in its group's three. semi-SCPAN appears in both groups.",
        "Method labels, venues and citation numbers are as printed (e.g. 'Techei' [35], 'TS (CVPR18) [35]' "
        "although [35] is an ICCV 2019 paper, 'AWing [61]' although [61] is Wing).",
    ),
)

# ---------------------------------------------------------------------------------- Table II
_T2_DATA = (("300W", "test", "300W"), ("Menpo 2D", "frontal", "Menpo"), ("COFW-68", "full", "COFW"))

TABLE_II = PaperTable(
    "II", "NME_box and AUC_box^7 (threshold 7 %) on 300W, Menpo 2D and COFW-68; * = pretrained on 300W-LP-2D",
    tuple(PaperColumn(d, s, h, m) for m in (NME_BOX, AUC_BOX_7) for d, s, h in _T2_DATA),
    (
        _row("SAN*", "CVPR18", 30, 2.86, 2.95, 3.50, 59.7, 61.9, 51.9),
        _row("2D-FAN*", "ICCV17", 48, 2.32, 2.16, 2.95, 66.5, 69.0, 57.5),
        _row("KDN", None, 45, 2.49, 2.26, _, 67.3, 68.2, _),
        _row("Softlabel*", "ICCV19", 52, 2.32, 2.27, 2.92, 66.6, 67.4, 57.9),
        _row("KDN*", "ICCV19", 52, 2.21, 2.01, 2.73, 68.3, 71.1, 60.1),
        _row("LUVLi", "CVPR20", 12, 2.24, 2.18, 2.75, 68.3, 70.1, 60.8),
        _row("LUVLi*", "CVPR20", 12, 2.10, 2.04, 2.57, 70.2, 71.9, 63.4),
        _own("SCPAN", 2.01, 1.93, 2.47, 71.8, 72.8, 65.1),
        _own("SCPAN*", 1.95, 1.88, 2.38, 72.5, 73.1, 65.7),
    ),
    (
        "The caption says '300W common subset' but section IV-A/B says the 300W testing set of 600 "
        "images (cross-dataset protocol of LUVLi and KDN); we read the 300W column as the 600-image "
        "300-W test set (our 300w split/subset 'test').",
        "AUC_box^7 is the AUC of the CED up to NME_box = 7 % (threshold 0.07).",
        "NME_box: the geometric mean of the width and height of the ground-truth box (section IV-A).",
        "Menpo 2D: its frontal (68-point) faces; COFW-68: the 507 COFW test faces with 68 points, tested "
        "with a model trained on 300W (section IV-C).",
        "SCPAN* is SCPAN pretrained on 300W-LP-2D; 'KDN [45]' and 'KDN* (ICCV19) [52]' cite two "
        "different references.",
    ),
)

# ---------------------------------------------------------------------------------- Table III
TABLE_III = PaperTable(
    "III", "NME_diag (full, frontal), NME_box (full) and AUC_box^7 (full, threshold 7 %) on AFLW",
    (PaperColumn("AFLW", "full", "NME_diag Full", NME_DIAG),
     PaperColumn("AFLW", "frontal", "NME_diag Frontal", NME_DIAG),
     PaperColumn("AFLW", "full", "NME_box Full", NME_BOX),
     PaperColumn("AFLW", "full", "AUC_box^7 Full", AUC_BOX_7)),
    (
        _row("CCL", "CVPR16", 21, 2.72, 2.17, _, _),
        _row("LL", "ICCV19", 62, 1.97, _, _, _),
        _row("SAN", "CVPR18", 30, 1.91, 1.85, 4.04, 54.0),
        _row("DSRN", "CVPR18", 63, 1.86, _, _, _),
        _row("LAB", "CVPR18", 14, 1.85, 1.62, _, _),
        _row("HR-Net", "19'", 50, 1.57, 1.46, _, _),
        _row("Wing", "CVPR18", 64, _, _, 3.56, 53.5),
        _row("KDN", None, 45, _, _, 2.80, 60.3),
        _row("LUVLi", "CVPR20", 12, 1.39, 1.19, 2.28, 68.0),
        _row("MHNN", "TIP21", 13, 1.38, 1.19, _, _),
        _own("SHN", 2.46, 1.92, 3.67, 56.4),
        _own("SHN+BALI", 1.84, 1.46, 2.32, 66.1),
        _own("SHN+SCPA", 1.62, 1.37, 2.21, 67.2),
        _own("SCPAN", 1.31, 1.10, 2.05, 69.8),
        _own("semi-SCPAN", 1.23, 1.05, 2.01, 70.7),
    ),
    (
        "Full: the 4386 AFLW-full test faces; Frontal: its 1165 frontal faces (section IV-A).",
        "NME_diag: the diagonal of the tight box of the landmarks (section IV-A).",
        "'CCLCVPR16[21]' is read as CCL (CVPR16) [21]; the paper spells ref. [13] MHNN, MHHN and MMHN in "
        "different places, each table's spelling is kept.",
    ),
)

# ---------------------------------------------------------------------------------- Table IV
TABLE_IV = PaperTable(
    "IV", "NME_ip and FR_ip^10 (NME_ip above 10 %) on COFW",
    (PaperColumn("COFW", "full", "NME_ip", NME_IP), PaperColumn("COFW", "full", "FR_ip^10", FR_IP_10)),
    (
        _row("DRDA", "CVPR16", 65, 6.46, 6.00),
        _row("RAR", "ECCV16", 66, 6.03, 4.14),
        _row("DAC-CSR", "CVPR17", 67, 6.03, 4.73),
        _row("CAM", "19'", 68, 5.95, 3.94),
        _row("PCD-CNN", "CVPR18", 55, 5.77, 3.73),
        _row("Wing", "CVPR18", 64, 5.44, 3.75),
        _row("LAB", "CVPR18", 14, 5.58, 2.76),
        _row("AWing", "ICCV19", 6, 4.94, 0.99),
        _row("ODN", "CVPR19", 29, 5.30, _),
        _row("MHNN", "TIP21", 13, 4.95, 1.78),
        _own("SHN", 6.21, 5.52),
        _own("SHN+BALI", 5.52, 3.16),
        _own("SHN+SCPA", 5.21, 2.17),
        _own("SCPAN", 4.93, 1.78),
        _own("semi-SCPAN", 4.83, 1.58),
    ),
    (
        "FR_ip^10: % of test faces whose NME_ip is above 10 % (section IV-C: 'more than 10%'), i.e. "
        "NME > 0.1.",
        "Section IV-A lists COFW with 68 landmarks (cross-dataset test), but the compared numbers are "
        "those of the 29-point COFW protocol and semi-SCPAN is trained on COFW mixed with CelebA "
        "(section IV-F); we read Table IV as COFW-29 (our source 'cofw'); COFW-68 is in Table II.",
        "'AWing (ICCV19) [6]' as printed ([6] in the list is another paper).",
    ),
)

# ---------------------------------------------------------------------------------- Table V
_T5 = (("full", "Testset"), ("pose", "Pose Subset"), ("expression", "Expression Subset"),
       ("illumination", "Illumination Subset"), ("makeup", "Make-Up Subset"),
       ("occlusion", "Occlusion Subset"), ("blur", "Blur Subset"))

TABLE_V = PaperTable(
    "V", "NME_io on WFLW (test set and its six attribute subsets)",
    tuple(PaperColumn("WFLW", s, h, NME_IO) for s, h in _T5),
    (
        _row("CCFS", "CVPR15", 69, 9.07, 21.36, 10.09, 8.30, 8.74, 11.76, 9.96),
        _row("DVLN", "CVPR17", 70, 6.08, 11.54, 6.78, 5.73, 5.98, 7.33, 6.88),
        _row("LAB", "CVPR18", 14, 5.27, 10.24, 5.51, 5.23, 5.15, 6.79, 6.32),
        _row("Wing", "CVPR18", 64, 5.11, 8.75, 5.36, 4.93, 5.41, 6.37, 5.81),
        _row("MHHN", "TIP21", 13, 4.77, 9.31, 4.79, 4.72, 4.59, 6.17, 5.82),
        _row("MMDN", "TNNLS21", 15, 4.87, 8.15, 4.99, 4.61, 4.72, 6.17, 5.72),
        _row("HRNet", "19'", 50, 4.60, 7.86, 4.78, 4.57, 4.26, 5.42, 5.36),
        _row("AWing", "ICCV19", 61, 4.36, 7.38, 4.58, 4.32, 4.27, 5.19, 4.96),
        _row("LUVLi", "CVPR20", 12, 4.37, 7.56, 4.77, 4.30, 4.33, 5.29, 4.94),
        _own("SHN", 5.78, 9.47, 6.39, 5.83, 5.91, 7.07, 7.21),
        _own("SHN+BALI", 4.73, 7.67, 4.96, 4.73, 4.56, 5.67, 5.47),
        _own("SHN+SCPA", 4.57, 7.43, 4.77, 4.52, 4.38, 5.44, 5.12),
        _own("SCPAN", 4.29, 7.22, 4.68, 4.34, 4.21, 5.25, 4.88),
        _own("semi-SCPAN", 4.21, 7.01, 4.57, 4.15, 4.16, 5.17, 4.81),
    ),
    (
        "Testset: all 2500 WFLW test faces (our subset 'full').",
        "Citation numbers [69], [70] are as printed; the paper's reference list gives other works there.",
    ),
)

# ---------------------------------------------------------------------------------- Table VI
TABLE_VI = PaperTable(
    "VI", "NME_ip on 300VW (scenarios 1-3)",
    tuple(PaperColumn("300VW", f"scenario{i}", f"Scenario{i}", NME_IP) for i in (1, 2, 3)),
    (
        _row("TSCN", "NIPS14", 71, 12.54, 7.25, 13.13),
        _row("CCFS", "CVPR15", 69, 7.68, 6.42, 13.67),
        _row("TCDCN", "TPAMI16", 72, 7.66, 6.77, 14.98),
        _row("CCR", "ECCV16", 73, 7.26, 5.89, 15.74),
        _row("iCCR", "ECCV16", 73, 6.71, 4.00, 12.75),
        _row("MDM", "CVPR16", 28, 5.46, 4.59, 7.42),
        _row("TSTN", "TPAMI18", 74, 5.36, 4.51, 12.84),
        _row("FHR", "AAAI19", 75, 5.07, 4.34, 7.36),
        _row("FHR+STA", "AAAI19", 75, 4.42, 4.18, 5.98),
        _row("STKI", "ACMMM20", 7, 5.04, 4.57, 6.11),
        _own("SCPAN", 4.49, 4.23, 5.87),
    ),
    (
        "The caption says '300W dataset', but the columns are 300VW's three scenarios and section IV-E "
        "presents Table VI as the 300VW evaluation; read as 300VW.",
        "The caption's normalisation, NME_ip, is used as printed (300VW results are often given under "
        "the inter-ocular distance; the paper does not say so here).",
        "Citation numbers [71]-[75] are as printed; the paper's reference list ends at [70].",
    ),
)

# ---------------------------------------------------------------------------------- Table VII
_CHALLENGING_IO = (PaperColumn("300W", "challenging", "NME", NME_IO),)

TABLE_VII = PaperTable(
    "VII", "NME_io on the 300W challenging subset for heatmaps drawn from different distributions",
    _CHALLENGING_IO,
    (
        _row("Gaussian", None, None, 4.43, setting={"distribution": "gaussian"}),
        _row("GED d=0.2", None, None, 4.67, setting={"distribution": "ged", "d": 0.2}),
        _row("GED d=0.1", None, None, 4.39, setting={"distribution": "ged", "d": 0.1}),
        _row("GED d=-0.1", None, None, 5.01, setting={"distribution": "ged", "d": -0.1}),
        _row("StD df=1", None, None, 4.42, setting={"distribution": "student_t", "df": 1}),
        _row("StD df=3", None, None, 4.40, setting={"distribution": "student_t", "df": 3}),
    ),
    (
        "The paper prints the settings as columns (Gaussian; GED d = 0.2, 0.1, -0.1; StD df = 1, 3) and "
        "one NME row; here each setting is a row.",
        "GED: generalised error distribution with shape parameter d (d = 0 gives the normal "
        "distribution); StD: Student-t with df degrees of freedom. The paper gives no formula for its "
        "GED parametrisation, so its d need not equal params.yaml's GED d.",
        "The Gaussian value equals SCPAN's 4.43 on the challenging subset in Table I.",
    ),
)

# ---------------------------------------------------------------------------------- Table VIII
_T8 = ((1, 0, 0, 0, 5.96), (1, 4, 0, 0, 5.69), (1, 4, 8, 0, 4.96), (1, 4, 16, 0, 4.78),
       (1, 4, 32, 0, 4.84), (1, 4, 16, 20, 4.54), (1, 4, 16, 40, 4.43), (1, 4, 16, 60, 5.01))

TABLE_VIII = PaperTable(
    "VIII", "NME_io on the 300W challenging subset for loss weights lambda1, eta, lambda2, gamma",
    _CHALLENGING_IO,
    tuple(_row(f"lambda1={l1}, eta={eta}, lambda2={l2}, gamma={g}", None, None, nme,
               setting={"lambda1": l1, "eta": eta, "lambda2": l2, "gamma": g})
          for l1, eta, l2, g, nme in _T8),
    (
        "The caption's 'NME_{i_0}' is read as NME_io.",
        "Rows keep the paper's column order (lambda1, eta, lambda2, gamma); lambda1 = 1 throughout.",
    ),
)

PAPER_TABLES: dict[str, PaperTable] = {t.name: t for t in (TABLE_I, TABLE_II, TABLE_III, TABLE_IV, TABLE_V,
                                                            TABLE_VI, TABLE_VII, TABLE_VIII)}


# ---------------------------------------------------------------------------------- section IV-G
@dataclass(frozen=True)
class PaperProfileRow:
    model: str                      # the paper's wording
    variant: str | None             # our variant at the paper's configuration, if any
    params_m: float                 # millions of parameters
    size_mb: float                  # "model size" in "MB" as printed (byte base not stated)
    fps: float | None               # "reference" (inference) speed on one Tesla V100
    nme_io_challenging: float | None = None   # NME_io (%) on the 300W challenging subset, if given


SECTION_IV_G_DEVICE = "one NVIDIA Tesla V100"
SECTION_IV_G: tuple[PaperProfileRow, ...] = (
    PaperProfileRow("SHN (four stacked hourglasses, the baseline)", "shn", 16.05, 184, 100),
    PaperProfileRow("SCPAN (three SCPA models + one HNU)", "scpan", 16.99, 195, 40, 4.43),
    PaperProfileRow("SCPAN with one SCPA model + one HNU", None, 8.73, 100, None, 4.61),
)
SECTION_IV_G_READINGS = (
    "The paper gives the baseline's model size and parameters as 16.05MB and 184MB (in that order), and "
    "SCPAN's parameters as 16.99MB and model size as 195MB; we read 16.05 / 16.99 / 8.73 as millions of "
    "parameters and 184 / 195 / 100 as the model size in MB (the only reading consistent across the three "
    "sentences).",
    "The paper does not say whether MB means 10^6 or 2^20 bytes, nor what the size counts. The three "
    "sizes are 12.0 bytes per parameter if MB = 2^20 B (11.5 if 10^6 B), about three float32 copies of "
    "the weights (e.g. a training checkpoint with two optimiser moments); float32 weights alone would "
    "be 61.2 / 64.8 / 33.3 MiB. This is our inference, not the paper's statement.",
    "'Reference speed' is read as inference speed (FPS on one Tesla V100); the batch size and whether "
    "decoding is included are not stated. Only SHN and SCPAN have an FPS.",
    "NME_io on the 300W challenging subset: 4.43 for SCPAN, 4.61 with one SCPA model and one HNU.",
)


def paper_table(name: str) -> PaperTable | None:
    return PAPER_TABLES.get(name)


def paper_rows(name: str) -> list[PaperRow]:
    table = PAPER_TABLES.get(name)
    return list(table.rows) if table else []
