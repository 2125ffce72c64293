"""Where a document came from: the kinds of model source FreezeStudio opens."""

from __future__ import annotations

from enum import Enum


class SourceFormat(str, Enum):
    """The format a model was read from (its value is the name the CLI and JSON use)."""

    KERAS = "keras"
    H5 = "h5"
    TF_KERAS_SAVEDMODEL = "tf_keras_savedmodel"
    SAVEDMODEL = "savedmodel"  # a generic SavedModel: variables by scope, no layer graph

    __str__ = str.__str__
    __format__ = str.__format__
