"""The `usher` command line and process composition: up, serve, worker, demo, bench.

The only layer that imports `api`, `engine` and `fixtures` together.
"""
