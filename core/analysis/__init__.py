"""Latent-space analysis: embeddings, sampling, trajectories, selections and convergence.

Plain numpy/scipy/scikit-learn on arrays of latent vectors `z` [N, zdim]; the CLI and the GUI
call the same functions, so both give the same results.
"""
