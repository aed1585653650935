"""threats layer of modelward (see DESIGN.md)."""
