"""Ingest: the source contract, the demo-store simulator, the file importer and the raw assets."""
