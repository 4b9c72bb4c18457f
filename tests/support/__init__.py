"""Helpers shared by several packages' tests (real parts started on 127.0.0.1)."""
