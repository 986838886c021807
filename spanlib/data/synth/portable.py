"""Float arithmetic that gives the same bits on every x86-64 CPU (and any IEEE-754 machine).

The synthetic faces must not depend on the CPU they are drawn on (docs/reproducibility.md). What
does depend on it, measured by running the generator with the SIMD dispatch of each library
turned down (``NPY_DISABLE_CPU_FEATURES``, ``OPENCV_CPU_DISABLE``, ``OPENCV_IPP``,
``OPENBLAS_CORETYPE``, ``GLIBC_TUNABLES=glibc.cpu.hwcaps=...``):

- glibc's ``sin``/``cos``/``atan2``/``exp`` (which NumPy's float64 ``np.sin`` etc. call) pick an
  FMA or a non-FMA variant by CPU and the two differ in the last bit for some inputs;
- ``np.matmul``/``@``/``np.dot``/``np.linalg.norm`` of a vector go to OpenBLAS, whose kernels
  differ per CPU (with and without FMA);
- OpenCV's ``resize`` of a float image goes to Intel IPP, whose SSE4.2 and AVX2/AVX-512 code
  round differently (the lighting field of ``face._finish`` used it).

What stays exact everywhere: IEEE-754 ``+ - * /`` and ``sqrt`` of float64 (NumPy evaluates each
ufunc separately, so nothing is fused into an FMA), ``np.rint``, comparisons, integer math. This
module builds what the generator needs from those only. ``sin``/``cos`` are fdlibm's kernels
(FreeBSD ``k_sin.c``/``k_cos.c``, error below 1 ulp) after a Cody-Waite reduction by pi/2 that is
exact for the angles used here (|x| < 2**19).
"""

from __future__ import annotations

import math

import numpy as np

# pi/2 split in two: the first part has 33 significant bits, so k * _PIO2_HI is exact for |k| < 2**20
_PIO2_HI = 1.57079632673412561417e+00
_PIO2_LO = 6.07710050650619224932e-11
_TWO_OVER_PI = 6.36619772367581382433e-01
_S = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
      2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_C = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
      -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)
DEG = math.pi / 180.0


def _kernels(r):
    """sin(r), cos(r) for |r| <= pi/4 (fdlibm __kernel_sin / __kernel_cos with y = 0); r is a
    float or a float64 array, the same operations in the same order either way."""
    z = r * r
    v = z * r
    s = r + v * (_S[0] + z * (_S[1] + z * (_S[2] + z * (_S[3] + z * (_S[4] + z * _S[5])))))
    rc = z * (_C[0] + z * (_C[1] + z * (_C[2] + z * (_C[3] + z * (_C[4] + z * _C[5])))))
    hz = 0.5 * z
    w = 1.0 - hz
    c = w + (((1.0 - w) - hz) + z * rc)
    return s, c


def sincos(x) -> tuple:
    """(sin x, cos x) of radians ``x`` (float or array), the same bits on every CPU."""
    if isinstance(x, (float, int, np.floating, np.integer)):
        # Python floats: IEEE-754 double operations one by one, like the array path, but faster
        a = float(x)
        if not abs(a) < 2.0**19:
            raise ValueError("portable.sincos: angles up to 2**19 radians only")
        k = round(a * _TWO_OVER_PI)              # ties to even, as np.rint
        s, c = _kernels((a - k * _PIO2_HI) - k * _PIO2_LO)
        return ((s, c), (c, -s), (-s, -c), (-c, s))[k & 3]
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.abs(a) < 2.0**19):
        raise ValueError("portable.sincos: angles up to 2**19 radians only")
    k = np.rint(a * _TWO_OVER_PI)
    s, c = _kernels((a - k * _PIO2_HI) - k * _PIO2_LO)
    q = k.astype(np.int64) & 3
    sin = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    cos = np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))
    return sin, cos


def sin(x):
    return sincos(x)[0]


def cos(x):
    return sincos(x)[1]


def matmul3(a, b) -> np.ndarray:
    """a @ b of two 3x3 matrices, summed left to right in Python floats (no BLAS)."""
    a = np.asarray(a, dtype=np.float64).tolist()
    b = np.asarray(b, dtype=np.float64).tolist()
    return np.array([[a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)]
                     for i in range(3)])


def rows_dot(points: np.ndarray, row) -> np.ndarray:
    """points (N, 3) @ row (3,), as three products summed left to right (no BLAS)."""
    p = np.asarray(points, dtype=np.float64)
    return p[:, 0] * float(row[0]) + p[:, 1] * float(row[1]) + p[:, 2] * float(row[2])


def length(v) -> float:
    """Euclidean length of a 2-vector: sqrt(x*x + y*y) (np.linalg.norm of a vector calls BLAS)."""
    x, y = (float(t) for t in np.asarray(v, dtype=np.float64).reshape(2))
    return math.sqrt(x * x + y * y)
