"""Characters' personas, conversations, LLM replies and image intent."""
