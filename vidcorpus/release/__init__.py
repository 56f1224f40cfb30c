"""A release on disk: its layout, readers, manifest, and one module per format (Parquet,
WebDataset), each reading and writing that format."""
