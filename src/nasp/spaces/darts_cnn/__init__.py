"""The DARTS CNN cell space (Liu et al., ICLR 2019), as NASP searches it."""

from nasp.spaces.darts_cnn.space import ChildNetwork, DartsCNNSpace, Supernet

__all__ = ["ChildNetwork", "DartsCNNSpace", "Supernet"]
