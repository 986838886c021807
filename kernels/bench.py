"""Run the ops benchmark as a script: ``python kernels/bench.py jsd --device cuda``.

The same as ``spanlib bench ...`` (the harness lives in ``spanlib/ops/benchmark.py`` so that the
installed command has it); results go to ``kernels/results/<device>/`` by default."""

import sys

from spanlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
