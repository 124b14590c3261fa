"""Training the 360-Adapter (everything else frozen) and preparing its data: flows and 360 Text Fusion captions.

Heavy imports (torch, diffusers, transformers, accelerate) live in the submodules that need them.
"""
