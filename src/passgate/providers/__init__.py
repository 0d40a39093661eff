"""One module per provider: base URL, credential, path mapping."""
