"""The demo: a scripted drive of the demo sedan (its frame generator) and the live demo."""
