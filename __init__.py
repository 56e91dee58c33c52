"""ComfyUI entry point: clone this repository into ComfyUI/custom_nodes/ and restart ComfyUI.

ComfyUI imports this file as a module named after the folder, often "diffskip", the name of the package
itself. So this shim never stands in for the package: it takes itself out of sys.modules["diffskip"],
imports the real package under its own name (an installed diffskip if there is one, else this folder's
diffskip/) and re-exports the node mappings of `diffskip.comfy`.
"""
import importlib as _importlib
import importlib.util as _util
import os as _os
import sys as _sys


def _nodes():
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _sys.modules.get("diffskip") is _sys.modules.get(__name__):  # loaded under the package's name
        del _sys.modules["diffskip"]
    if "diffskip" not in _sys.modules:
        spec = _util.find_spec("diffskip")
        if spec is None or _os.path.abspath(spec.origin or "") == _os.path.abspath(__file__):
            pkg = _os.path.join(here, "diffskip")
            spec = _util.spec_from_file_location("diffskip", _os.path.join(pkg, "__init__.py"),
                                                 submodule_search_locations=[pkg])
            module = _util.module_from_spec(spec)
            _sys.modules["diffskip"] = module
            spec.loader.exec_module(module)
    return _importlib.import_module("diffskip.comfy")


_comfy = _nodes()
NODE_CLASS_MAPPINGS = _comfy.NODE_CLASS_MAPPINGS
NODE_DISPLAY_NAME_MAPPINGS = _comfy.NODE_DISPLAY_NAME_MAPPINGS
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
