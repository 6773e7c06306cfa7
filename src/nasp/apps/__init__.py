"""What a person runs: the command line, comparisons, export and step timing."""
