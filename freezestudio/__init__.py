"""FreezeStudio: edit what a Keras/TensorFlow model may learn."""

__version__ = "0.1.0"
