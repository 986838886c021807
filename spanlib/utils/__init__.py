"""Bottom layer: errors, file writing, provenance, device choice. Imports no other spanlib package."""
