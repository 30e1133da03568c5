"""Usher's engine: everything that is not HTTP."""
