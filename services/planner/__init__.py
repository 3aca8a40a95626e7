"""Turns a picture request into an ordered edit plan and drives each chain (saga)."""
