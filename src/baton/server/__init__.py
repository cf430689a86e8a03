"""The HTTP shell: protocol parsing and error mapping around `baton.core` and `baton.store`."""
