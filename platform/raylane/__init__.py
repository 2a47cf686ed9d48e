"""raylane."""
