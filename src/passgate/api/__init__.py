"""Admin routes and the app factory."""
