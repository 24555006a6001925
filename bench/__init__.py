"""Benchmarks: each module measures one layer against a peer on the same machine.

Results go into ``docs/performance.md``; ``python -m bench.run`` lists and runs them.
"""
