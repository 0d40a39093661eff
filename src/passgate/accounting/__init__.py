"""Usage extraction, the pricing catalog, cost, and the batched spend writer."""
