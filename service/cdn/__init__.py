"""The CDN: promotion of exactly the scanned tree, yanks, the blocklist, purges, retro-scans."""
