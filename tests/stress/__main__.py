"""`python -m tests.stress [--requests N] [--concurrency C]`: run it and print the report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from .runner import run


def main() -> int:
    """Run the stress test; exit 1 when anything leaked or an unexpected error came up."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    report = asyncio.run(run(args.requests, args.concurrency))
    print(json.dumps({**dataclasses.asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
