"""The chat service's pure domain: character and conversation state, folded and decided without I/O."""
