"""The bundled TF-Slim networks: definitions, checkpoints, download, converters."""
