"""Dynamically registered clients (RFC 7591, RFC 7592): their registration, read, update and
deletion with the registration access token, and the expiry of registrations no grant used.

`DynamicClientStore` is a mixin of `SQLStore`: each method is one unit of work through the
store's runner.
"""

from __future__ import annotations


class DynamicClientStore:
    """RFC 7591/7592 registrations."""
