"""Baton: an OAuth 2.0 authorization server with safe rotating refresh tokens."""

__version__ = "0.1.0"
