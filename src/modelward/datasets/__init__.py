"""datasets layer of modelward (see DESIGN.md)."""
