"""The web UI at ``/ui``: server-rendered pages over the admin API's services and rules."""
