"""Operators: people who sign in to the pages, tokens with a role, sessions, sign-in limits."""
