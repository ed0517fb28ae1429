"""finops layer."""
