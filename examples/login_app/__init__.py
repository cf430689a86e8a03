"""An example login and consent app for Baton (README: "Bring your own login")."""
