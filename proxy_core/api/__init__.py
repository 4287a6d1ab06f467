"""HTTP layer: routes translate requests into service calls and results into responses."""
