"""Peer methods for the accuracy benchmark: OpenCV SIFT and DISK + LightGlue (kornia, offline weights)."""


def sift():
    """A SIFT matcher with the benchmark's settings; OpenCV's SIFT is imported only when one is built."""
    from benchmarks.peers.sift import SiftMatcher

    return SiftMatcher()
