"""The DARTS recurrent cell space (Liu et al., ICLR 2019: Penn Treebank language modelling)."""

from nasp.spaces.darts_rnn.genotype import RecurrentGenotype
from nasp.spaces.darts_rnn.network import RecurrentDropouts, RecurrentNetwork, RecurrentSupernet
from nasp.spaces.darts_rnn.space import DartsRNNSpace

__all__ = ["DartsRNNSpace", "RecurrentDropouts", "RecurrentGenotype", "RecurrentNetwork",
           "RecurrentSupernet"]
