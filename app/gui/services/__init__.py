"""The explorer's services, one per concern, each owning its worker threads and the part of the
models it updates: runs (open, epochs, metadata), embedding (PCA/UMAP, k-means, colouring),
volumes (decode cache, exact decode, meshing, pin, save), trajectories (paths, previews,
exports, movie frames), selections (exports), training (a child process). Widgets call their
public methods and draw the models' events; `Explorer` builds them over one state."""
