"""OCI rules: names, digests, media types, manifest validation and error codes."""
