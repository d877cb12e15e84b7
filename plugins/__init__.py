"""Built-in plugins, registered before third-party ones (see core/plugins.py)."""
