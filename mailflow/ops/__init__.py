"""Running the service: health, metrics, systemd notify, logs, configuration checks."""
