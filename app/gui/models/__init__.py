"""The explorer's state as plain Python objects (no Qt, no vispy): what the user looks at, and
an event for every change. Services update them; widgets and visuals draw them."""
