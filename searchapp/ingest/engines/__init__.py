"""Engines that run the indexing stages elsewhere than the local threads (ray_engine), feeding
the same commit path into the catalog."""
