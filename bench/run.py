"""Benchmarks entry point (`make bench`). Suites land with the issues that define them."""

import sys

if __name__ == "__main__":
    print("No benchmark suites yet; see bench/RESULTS.md.")
    sys.exit(0)
