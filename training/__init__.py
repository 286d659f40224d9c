"""tfcf: training."""
