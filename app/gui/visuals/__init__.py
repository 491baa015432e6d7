"""Drawing: the latent scatter and histogram (pyqtgraph), the loss curve (pyqtgraph), the
isosurfaces (vispy), their meshes and the movie frames rendered from them. Visuals draw what
they are given and report the user's gestures as Qt signals; they call no service."""
