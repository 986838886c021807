"""Run the ops benchmark as a script: ``python kernels/bench.py jsd --device cpu``.

The same as ``spanlib bench ...``; the harness is ``spanlib.bench.harness``.
Results go to ``kernels/results/<device>/`` by default."""

import sys

from spanlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
