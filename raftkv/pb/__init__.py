"""pb package."""
