"""The user's own code and classes: importing the module or file that defines a model's custom
layers (--import), and naming the classes a failed load could not find."""

import os
import re
import sys
from pathlib import Path

from gradcam_cli.errors import ModelError, one_line


_UNKNOWN_CLASS = (r"Could not locate class '([^']+)'", r"Could not locate function '([^']+)'",
                  r"Unknown (?:layer|object|class|activation|function)[a-z ]*: '([^']+)'")


def unknown_classes(error, path):
    """The custom classes a failed load could not find, as 'Name (module mod)' where the file
    says, else []: from Keras's message (its wording differs between .keras and .h5)."""
    text = " ".join(str(error).split())
    names = []
    for pattern in _UNKNOWN_CLASS:
        names += [name for name in re.findall(pattern, text) if name not in names]
    if not names:
        return []
    modules = _class_modules(path)
    described = []
    for name in names:
        module = modules.get(name) or modules.get(name.split(">")[-1])
        described.append(f"class {name.split('>')[-1]!r}" + (f" (module {module})" if module else ""))
    return described


def _class_modules(path):
    """{class or registered name: module} for the non-Keras classes in a .keras file's config."""
    import json
    import zipfile

    found = {}

    def walk(node):
        if isinstance(node, dict):
            module = node.get("module")
            if isinstance(node.get("class_name"), str) and isinstance(module, str) and not module.startswith("keras"):
                found[node["class_name"]] = module
                if isinstance(node.get("registered_name"), str):
                    found[node["registered_name"]] = module
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        with zipfile.ZipFile(path) as archive:
            walk(json.loads(archive.read("config.json")))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass
    return found


def import_user_code(item):
    """Import a module by name ('mypackage.layers') or a Python file ('layers.py'), so that the
    Keras classes it registers (keras.saving.register_keras_serializable) can be deserialized.
    Importing runs the module's code. ModelError in one line when it cannot be imported."""
    import importlib
    import importlib.util

    text = str(item)
    path = Path(text)
    try:
        if text.endswith(".py") or path.is_file():
            if not path.is_file():
                raise ModelError(f"cannot import {text}: no such file")
            name = path.stem
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None:
                raise ModelError(f"cannot import {text}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)  # as `python FILE` does: its sibling modules import
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # `--import mylayers` finds ./mylayers.py
        return importlib.import_module(text)
    except ModelError:
        raise
    except ModuleNotFoundError as error:
        raise ModelError(f"cannot import {text}: {error}") from None
    except Exception as error:  # the user's module failed while running: say how, in one line
        raise ModelError(f"cannot import {text}: {type(error).__name__}: {one_line(error, 200)}") from None
