"""The standard protocol: what a number in the paper's tables means, MATLAB-exact.

Owns: :mod:`~drn.protocol.resize` (MATLAB's bicubic ``imresize``: every LR image),
:mod:`~drn.protocol.metrics` (PSNR and SSIM on the BT.601 luma, as ``Evaluate_PSNR_SSIM.m``),
:mod:`~drn.protocol.scoring` (HR/LR pairs, scoring a set of SR images, the bicubic baseline, the
results' JSON).

May import: :mod:`drn.core`, numpy, scipy. No torch: any method's SR images are scored here.
"""
