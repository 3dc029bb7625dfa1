"""Long statistical release gates (every test here is marked `slow`)."""
