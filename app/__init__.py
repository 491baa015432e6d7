"""cryoscape's front ends: the command line and the desktop explorer."""
