"""tfcf: data."""
