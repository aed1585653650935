"""attacks layer of modelward (see DESIGN.md): evasion (``attacks.evasion``), one verb per family."""
