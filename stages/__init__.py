"""Pipeline stages: science functions on arrays, each with a thin click command."""
