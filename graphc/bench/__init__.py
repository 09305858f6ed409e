"""``graphc bench``: Knet's benchmark table, graphc next to the frameworks a user would pick
instead, each in its own interpreter, from the same task files (data, initial weights,
batch order). ``tasks`` defines the models, ``systems`` who runs them, ``runner`` runs them,
``report`` prints and saves the table; docs/bench.md says how to set the peers up.
"""
