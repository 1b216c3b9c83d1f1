"""promptlens: find and repair the parts of a prompt that push the wanted output down."""
