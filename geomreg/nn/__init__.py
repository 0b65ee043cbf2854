"""Neural building blocks: the SSD scan, Mamba-2 mixers for 2-D feature maps, and their cross form."""

from geomreg.nn.ssd import cuda_kernel_available, ssd_reference, ssd_scan

__all__ = ["ssd_scan", "ssd_reference", "cuda_kernel_available"]
