"""mailflow: social-network publication procedures run over e-mail."""

__version__ = "0.1.0.dev0"
