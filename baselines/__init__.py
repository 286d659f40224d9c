"""tfcf: baselines."""
