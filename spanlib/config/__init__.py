"""The params schema, params files and landmark schemes (torch-free)."""
