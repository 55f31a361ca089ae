"""The user's own code and classes: importing the module or file that defines a model's custom
layers (--import), and naming the classes a failed load could not find."""

import os
import re
import sys
from pathlib import Path

from gradcam_cli.errors import ModelError, argument, one_line

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


_TAKES = f"{argument('imports')} takes a module name (mypackage.layers) or a Python file (layers.py)"


def _module_name(text):
    """Whether `text` is a dotted module name ('mypackage.layers')."""
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _refused(text, what):
    return ModelError(f"cannot import {text!r}: {what}; {_TAKES}")


def import_user_code(item):
    """Import a module by name ('mypackage.layers') or a Python file ('layers.py'), so that the
    Keras classes it registers (keras.saving.register_keras_serializable) can be deserialized.
    Importing runs the module's code. ModelError in one line when it cannot be imported: a file
    that is missing, a folder, not a .py file, a name that is neither a module name nor a file
    (`../../etc/passwd`), or a module that fails while it runs (its exception, in one line).

    The rule: a value that ends in .py, names something that exists, or is not a dotted module
    name is a path; anything else is a module name."""
    import importlib
    import importlib.util

    text = str(item)
    path = Path(text)
    as_path = text.endswith(".py") or os.path.lexists(text) or not _module_name(text)
    try:
        if not text.strip():
            raise _refused(text, "an empty name")
        if as_path:
            if path.is_dir():
                raise _refused(text, "a folder (give its package's module name, or one of its .py files)")
            if not path.is_file():
                raise _refused(text, "no such file" if text.endswith(".py") or os.sep in text or "/" in text
                               else "neither a module name nor an existing file")
            if path.suffix != ".py":
                raise _refused(text, "a file whose name does not end in .py")
            name = path.stem
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or not _module_name(name):
                raise _refused(text, f"{path.name} is not named as a Python module")
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
    except SyntaxError as error:  # the file's own line and place, not its text
        where = f"{Path(error.filename or text).name}, line {error.lineno}"
        raise ModelError(f"cannot import {text}: SyntaxError: {error.msg} ({where})") from None
    except SystemExit as error:  # the module ended the interpreter: that is a failed import, not our exit
        raise ModelError(f"cannot import {text}: it called sys.exit({error.code!r}) while importing") from None
    except Exception as error:  # the user's module failed while running: say how, in one line
        raise ModelError(f"cannot import {text}: {type(error).__name__}: {one_line(error, 200)}") from None
