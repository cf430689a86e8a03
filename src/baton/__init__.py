"""Baton: an OAuth 2.0 authorization server with safe rotating refresh tokens."""

__version__ = "0.1.0"
# The name Baton is published under on the package index (`baton` there is another project):
# the one to name in an install hint, and to read the installed version of.
DISTRIBUTION = "baton-oauth"
