"""cli layer of modelward (see DESIGN.md)."""
