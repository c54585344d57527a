"""Side-by-side benchmarks of flask-verdant and the official Node server (see BENCHMARKS.md)."""
