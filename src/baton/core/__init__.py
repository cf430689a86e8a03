"""The pure domain of Baton: token formats, lifetimes and the rotation rules.

Nothing in this package performs I/O or reads the wall clock; time is always passed in, so every
rule can be tested at its boundary instants with a fake clock.
"""
