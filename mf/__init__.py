"""tfcf: mf."""
