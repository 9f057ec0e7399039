"""Image encoders, created by name through a registry (see registry.py)."""
