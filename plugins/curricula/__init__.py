"""Built-in curricula plugins: every public module here is registered."""
