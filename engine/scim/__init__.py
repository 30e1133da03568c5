"""SCIM: the provider and its discovery, the IdP dialects, storage, search and the catalogue.

Serves one SCIM request end to end inside one transaction and returns the jobs to enqueue.
May import `engine.storage`, `engine.apps` and `engine.jobs.outbox`; never automation.
"""
