"""privacy layer of modelward (see DESIGN.md)."""
