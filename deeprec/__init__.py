"""tfcf: deeprec."""
