"""glia's coordinator and Rust modules inside Synapse's process: the Synapse module
`GliaEmbedded` over the Rust extension `glia_embedded._native`."""

from glia_embedded.module import GliaEmbedded

__all__ = ["GliaEmbedded"]
