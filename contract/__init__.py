"""What the hooks emit and the runtime consumes, in one torch-free place.

Importable by `hooks`, `serving`, `tuning` and `artifacts`; imports only the standard library and
pydantic. Public surface: `contract.urlpolicy` (the one URL-safety policy) and `contract.ports`.
"""
