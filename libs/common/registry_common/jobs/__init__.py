"""Job logic: manifest indexing, blob GC, storage usage, upload expiry."""
