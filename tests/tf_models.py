"""Tiny TensorFlow SavedModels the tests build themselves: a Keras classifier exported with
`model.export` (Keras 3) and a `tf.Module` with two signatures saved with
`tf.saved_model.save`, laid out as Triton, OVMS and a bare folder each keep them."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

FEATURES, CLASSES, HIDDEN = 4, 3, 16
F = TypeVar("F", bound=Callable[..., Any])


def signature(*specs: Any) -> Callable[[F], F]:
    """`tf.function` with an input signature (a serving signature once saved)."""
    decorator: Callable[[F], F] = tf.function(input_signature=list(specs))
    return decorator


def classifier() -> Any:
    """x [batch, 4] -> Dense 16 relu -> Dense 3 softmax, from a fixed seed."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(FEATURES,), name="x")
    hidden = keras.layers.Dense(HIDDEN, activation="relu")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


class AddSub(tf.Module):  # type: ignore[misc]
    """`serving_default`: a, b [batch, 4] -> sum, diff; `scaled`: a -> a * 2 (+ b ignored)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = tf.Variable(2.0)

    @signature(
        tf.TensorSpec([None, FEATURES], tf.float32, name="a"),
        tf.TensorSpec([None, FEATURES], tf.float32, name="b"),
    )
    def serve(self, a: Any, b: Any) -> dict[str, Any]:
        return {"sum": a + b, "diff": a - b}

    @signature(tf.TensorSpec([None, FEATURES], tf.float32, name="a"))
    def scaled(self, a: Any) -> dict[str, Any]:
        return {"scaled": a * self.scale}


class AnyWidth(tf.Module):  # type: ignore[misc]
    """x [batch, any width] @ a [4, 2] weight: only TensorFlow itself can refuse a width."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = tf.Variable(np.ones((FEATURES, 2), np.float32))

    @signature(tf.TensorSpec([None, None], tf.float32, name="x"))
    def serve(self, x: Any) -> dict[str, Any]:
        return {"y": tf.matmul(x, self.weight)}


class Words(tf.Module):  # type: ignore[misc]
    """text (BYTES) [batch] -> length INT32 [batch] and upper (BYTES) [batch]."""

    @signature(tf.TensorSpec([None], tf.string, name="text"))
    def serve(self, text: Any) -> dict[str, Any]:
        return {"length": tf.strings.length(text), "upper": tf.strings.upper(text)}


def export_classifier(model: Any, folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    model.export(str(folder), verbose=False)
    return folder


def save_addsub(folder: Path) -> Path:
    module = AddSub()
    signatures = {"serving_default": module.serve, "scaled": module.scaled}
    tf.saved_model.save(module, str(folder), signatures=signatures)
    return folder


def save_module(module: Any, folder: Path) -> Path:
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def build_tf_repository(root: Path) -> Path:
    """classifier (Triton's layout, `platform: "tensorflow_savedmodel"`, tensors from the
    signature), classifier_ovms (OVMS's layout, no config), addsub.savedmodel (a bare folder,
    two inputs), addsub_scaled (Triton's layout, `backend: "tensorflow"`, TF_SIGNATURE_DEF
    picking the second signature), anywidth.savedmodel and words.savedmodel (bare folders)."""
    model = classifier()
    export_classifier(model, root / "classifier" / "1" / "model.savedmodel")
    _write(
        root / "classifier" / "config.pbtxt",
        """
        platform: "tensorflow_savedmodel"
        dynamic_batching { max_queue_delay_microseconds: 50000 }
        """,
    )
    shutil.copytree(root / "classifier" / "1" / "model.savedmodel", root / "classifier_ovms" / "1")
    save_addsub(root / "addsub.savedmodel")
    shutil.copytree(root / "addsub.savedmodel", root / "addsub_scaled" / "1" / "model.savedmodel")
    _write(
        root / "addsub_scaled" / "config.pbtxt",
        """
        backend: "tensorflow"
        parameters { key: "TF_SIGNATURE_DEF" value { string_value: "scaled" } }
        """,
    )
    save_module(AnyWidth(), root / "anywidth.savedmodel")
    save_module(Words(), root / "words.savedmodel")
    return root
