"""Import of the Cloudflare generation of the registry: D1 metadata (`d1`) and R2 objects (`r2`).

Both are one-off console commands (`registry-migrate-d1`, `registry-migrate-r2`) that may be run
again at any time: what is already imported is skipped, never overwritten.
"""
