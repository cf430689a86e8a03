"""The admin console under /admin."""
