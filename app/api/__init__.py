"""Litestar API: thin controllers that validate requests and read or write through SQL."""
