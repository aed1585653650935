"""checks layer of modelward (see DESIGN.md)."""
