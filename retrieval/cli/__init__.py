"""fetchmail's command line, ``python -m retrieval.engine``: the rcfile package and the engine composed.

Options (:mod:`.options`) are merged into the parsed rcfile (:mod:`.config`), each
entry becomes a spec the engine polls (:mod:`.main`), seen UIDs persist in the
idfile (:mod:`.idfile`), and ``-d N`` repeats it all (:mod:`.daemon`). The engine
imports nothing from here; ``tests/engine/test_layers.py`` holds that line.
"""
