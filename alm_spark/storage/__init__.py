"""Storage: file systems, the output lock, publishing, schemas, reading and writing rows."""
