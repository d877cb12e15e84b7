"""Built-in rewards plugins: every public module here is registered."""
