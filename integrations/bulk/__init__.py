"""Bulk data paths: initial load and re-sync of a flow (load), F&O data packages (packages)."""
