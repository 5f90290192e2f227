"""Find models on disk, read their configs, and manage their life cycle."""
