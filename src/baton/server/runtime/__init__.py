"""What every request runs on: processes, settings, store, sessions, keys, limits, protections."""
