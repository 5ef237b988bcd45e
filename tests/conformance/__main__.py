"""`python -m tests.conformance`: httpx's test suite, stock transport vs PoolTransport."""

import sys

from .suite import main

sys.exit(main())
