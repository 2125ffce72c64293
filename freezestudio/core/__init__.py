"""Qt-free core: loading, the edit document, plans, graph surgery, analysis, saving.

Nothing in this package may import Qt, pyqtgraph or `freezestudio.gui`.
"""
