"""Seeing what a collection holds: a 2-D map, clusters, uniqueness and outliers, and the health of
the embedding distribution. Plain functions over arrays of vectors; the library reads the vectors
and records, these work on them, and store nothing themselves."""
