"""passgate: a fast, faithful LLM API gateway."""

__version__ = "0.1.0"
