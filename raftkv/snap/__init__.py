"""snap package."""
