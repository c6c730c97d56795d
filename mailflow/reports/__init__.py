"""Evidence bundles and the POAI report, read from the store and the archive."""
