"""Rendering of results: figures, the HTML report, the terminal summary."""
