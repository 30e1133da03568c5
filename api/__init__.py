"""Usher's HTTP side: SCIM for the IdP, the jobs API and evidence for operators."""
