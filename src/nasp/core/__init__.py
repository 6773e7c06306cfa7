"""The core of every space: primitive ops, the mixed edge and its execution modes, the proximal
steps, and model size figures. Imports nothing above it."""
