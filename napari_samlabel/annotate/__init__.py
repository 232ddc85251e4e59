"""The application layer, Qt-free: annotation session, engine lane, refine and review."""
