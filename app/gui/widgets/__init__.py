"""Qt panels: they read the models, call the services' public methods and hold the visuals;
they import no vispy or pyqtgraph themselves and never reach into another object's
attributes."""
