"""Budgets and rate limits, with in-process and Redis backends."""
