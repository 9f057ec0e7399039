"""Object detectors for hybrid N+1 storage, looked up by name in detect.registry."""
