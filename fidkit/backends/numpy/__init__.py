"""The numpy runtime: a float64 reference interpreter of fidkit graphs (slow, exact, always installed)."""
