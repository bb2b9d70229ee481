"""``python -m experiments run ...``: the experiment harness (issue: the harness).

Until the harness lands this says so; ``python -m experiments.hello_bench``
(``make bench``) is the benchmark that exists today.
"""

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "run":
        print("usage: python -m experiments run [--conc N] [--runtimes ...]", file=sys.stderr)
        return 2
    print("experiments: the harness is not built yet; `make bench` runs the hello-world benchmark.")
    return 0


sys.exit(main(sys.argv[1:]))
