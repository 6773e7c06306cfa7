"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020) and its benchmark table."""

from nasp.spaces.nb201.space import NB201ChildNetwork, NB201Space, NB201Supernet

__all__ = ["NB201ChildNetwork", "NB201Space", "NB201Supernet"]
