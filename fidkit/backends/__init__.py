"""Feature extractors per runtime, one folder each with the same module names; imported only when used."""
