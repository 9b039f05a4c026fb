"""Drop-in adapters for the frameworks people already use.

Each adapter lives in its own module and imports its framework lazily, so
``import chatkeep.adapters`` costs nothing; a missing framework raises
:class:`chatkeep.MissingDependency` naming the pip extra to install.
"""
