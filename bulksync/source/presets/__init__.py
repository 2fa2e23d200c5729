"""The built-in mappings (``--preset NAME``), one TOML file each."""
