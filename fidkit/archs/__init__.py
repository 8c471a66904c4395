"""Framework-free network descriptions: one graph per architecture, interpreted by each runtime backend."""
