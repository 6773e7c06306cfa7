"""The DARTS CNN cell space (Liu et al., ICLR 2019), as NASP searches it."""

from nasp.spaces.darts_cnn.child import ChildNetwork
from nasp.spaces.darts_cnn.space import DartsCNNSpace
from nasp.spaces.darts_cnn.supernet import Supernet

__all__ = ["ChildNetwork", "DartsCNNSpace", "Supernet"]
