"""attacks layer of modelward (see DESIGN.md)."""
