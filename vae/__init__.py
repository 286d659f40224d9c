"""tfcf: vae."""
