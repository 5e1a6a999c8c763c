"""mvcc package."""
