"""Storage tests: the audit chain, evidence verification, export and the evidence stores."""
