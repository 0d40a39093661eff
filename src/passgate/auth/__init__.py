"""Who is calling: master key, virtual keys, the key cache."""
