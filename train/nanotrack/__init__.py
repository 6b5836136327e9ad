"""Training on the NanoTrack v3 base (whose weights stay frozen): the target layer's rule."""
