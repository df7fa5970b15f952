"""Local runners for the real components Postsale needs when no Docker engine is available."""
