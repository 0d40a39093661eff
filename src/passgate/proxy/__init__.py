"""The forwarding engine: path and header rules, upstream client, streaming relay."""
