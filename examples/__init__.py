"""Examples of protecting APIs with baton.resource."""
