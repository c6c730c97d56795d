"""The daemon's lifecycle and the composition root every command uses."""
