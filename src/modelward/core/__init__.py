"""core layer of modelward (see DESIGN.md)."""
