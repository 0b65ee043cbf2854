"""Peer methods for the accuracy benchmark: OpenCV SIFT and DISK + LightGlue (kornia, offline weights)."""
