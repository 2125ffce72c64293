"""TensorFlow's removal of a dead traced function, with the GIL released.

When the last reference to a traced `tf.function` goes, TensorFlow removes it from its
eager context (`Context.remove_function`, called from `AtomicFunction.__del__`). Its
Python binding of the C API call `TFE_ContextRemoveFunction` keeps the GIL while the C++
side destroys the function's instantiated, optimised graph: for a large model's training
step that is one uninterrupted GIL hold of tens of milliseconds, in whichever thread
drops the function, and every other Python thread (the GUI's) waits for it.

`release_functions_without_the_gil()` makes `Context.remove_function` call the same
public C API function through `ctypes`, which releases the GIL for the duration of a
foreign call. It is an opt-in for processes with a thread that must stay responsive (the
GUI); nothing else about the removal changes: the context still initialises first, and
a failing removal falls back to TensorFlow's own call, which raises TensorFlow's own
error. Where the C library or the context handle is not as expected, TensorFlow's own
removal stays and the function says so by returning False.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

_lock = threading.Lock()
_installed = False


def release_functions_without_the_gil() -> bool:
    """Installs the GIL-free removal once per process (idempotent, thread-safe).

    Returns:
        Whether TensorFlow's removal of functions now runs without the GIL.
    """
    global _installed
    with _lock:
        if _installed:
            return True
        import tensorflow
        from tensorflow.python.eager import context

        library = _c_library(os.path.dirname(tensorflow.__file__))
        if library is None:
            return False
        context.ensure_initialized()
        if _context_pointer(context.context()._handle) is None:
            return False
        context.Context.remove_function = _gil_free_remove(context.Context.remove_function,
                                                           library)
        _installed = True
        return True


def _gil_free_remove(tensorflow_remove, library):
    def remove_function(self, name):
        """Removes function `name` from the context, without holding the GIL."""
        self.ensure_initialized()
        pointer = _context_pointer(self._handle)
        failed = pointer is None
        if not failed:
            encoded = name if isinstance(name, bytes) else str(name).encode()
            status = library.TF_NewStatus()
            try:
                library.TFE_ContextRemoveFunction(pointer, encoded, status)
                failed = library.TF_GetCode(status) != 0
            finally:
                library.TF_DeleteStatus(status)
        if failed:  # TensorFlow's own call raises TensorFlow's own error for it
            tensorflow_remove(self, name)

    remove_function.__doc__ = tensorflow_remove.__doc__
    return remove_function


def _c_library(tensorflow_dir: str):
    """TensorFlow's C API library with the four functions typed, or None."""
    candidates = sorted(glob.glob(os.path.join(tensorflow_dir, "libtensorflow_cc*"))) + \
        sorted(glob.glob(os.path.join(tensorflow_dir, "python", "_pywrap_tensorflow_internal*")))
    for path in candidates:
        try:
            library = ctypes.CDLL(path)  # already loaded by TensorFlow: the same handle
        except OSError:
            continue
        if all(hasattr(library, f) for f in ("TFE_ContextRemoveFunction", "TF_NewStatus",
                                               "TF_GetCode", "TF_DeleteStatus")):
            library.TF_NewStatus.restype = ctypes.c_void_p
            library.TF_NewStatus.argtypes = []
            library.TF_GetCode.restype = ctypes.c_int
            library.TF_GetCode.argtypes = [ctypes.c_void_p]
            library.TF_DeleteStatus.restype = None
            library.TF_DeleteStatus.argtypes = [ctypes.c_void_p]
            library.TFE_ContextRemoveFunction.restype = None
            library.TFE_ContextRemoveFunction.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                          ctypes.c_void_p]
            return library
    return None


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_is_capsule = ctypes.pythonapi.PyCapsule_IsValid
_is_capsule.restype = ctypes.c_int
_is_capsule.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _context_pointer(handle) -> int | None:
    """The `TFE_Context*` inside the context's handle (an unnamed capsule), or None."""
    if not _is_capsule(handle, None):
        return None
    return _capsule_pointer(handle, None)
