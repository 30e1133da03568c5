"""Storage: the database, its models and migrations, the vault, tokens and evidence.

The bottom of the engine: imports nothing from the rest of Usher but `engine.constants`
and `engine.settings`.
"""
