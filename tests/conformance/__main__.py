"""`python -m tests.conformance`: httpx's test suite, stock transport vs PoolTransport."""

import sys

from .suite import main

if __name__ == "__main__":  # pytest-markdown-docs imports every module for its docstrings
    sys.exit(main())
