"""An example login and consent app for Baton (docs/login.md: "Bring your own login")."""
