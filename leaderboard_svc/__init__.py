"""The live ranking service: projects quiz events into per-quiz rankings and streams them."""
