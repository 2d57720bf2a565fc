"""glia_synapse: a Synapse module that forwards Synapse's module callbacks to glia.

Load it from Synapse's `modules:` list as `glia_synapse.GliaBridge`; see the README.
"""

from glia_synapse.bridge import GliaBridge

__all__ = ["GliaBridge"]
__version__ = "0.1.0"
