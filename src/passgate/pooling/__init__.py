"""Several deployments of one provider: where their resources live, and their health
shared between workers and instances."""
