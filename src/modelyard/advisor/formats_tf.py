"""TensorFlow SavedModels read without TensorFlow: `saved_model.pb` (a SavedModel protobuf,
walked at the wire level) gives the serving signature's inputs, outputs, dtypes and dynamic
dimensions; `variables/variables.index` (a TensorBundle: a LevelDB-format table of
BundleEntryProto records, uncompressed) gives each variable's dtype, shape and byte size.

Field numbers are those of tensorflow/core/protobuf: SavedModel.meta_graphs = 2,
MetaGraphDef.meta_info_def = 1 and signature_def = 5, SignatureDef.inputs / outputs = 1 / 2,
TensorInfo.dtype / tensor_shape = 2 / 3, BundleEntryProto.dtype / shape / size = 1 / 2 / 5.
"""

from __future__ import annotations

import mmap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.advisor.artifact import ArtifactInfo
from modelyard.advisor.protowire import Buffer, Span, fields, signed, text, varint
from modelyard.errors import InvalidArgument
from modelyard.spec.config import TensorSpec

# tensorflow DataType -> (KServe datatype, bytes per element; 0: variable length)
TF_DTYPES: dict[int, tuple[str, int]] = {
    1: ("FP32", 4),
    2: ("FP64", 8),
    3: ("INT32", 4),
    4: ("UINT8", 1),
    5: ("INT16", 2),
    6: ("INT8", 1),
    7: ("BYTES", 0),
    9: ("INT64", 8),
    10: ("BOOL", 1),
    14: ("BF16", 2),
    17: ("UINT16", 2),
    19: ("FP16", 2),
    22: ("UINT32", 4),
    23: ("UINT64", 8),
}
#: The signature served when a config names none, and the tag set Triton and TF Serving load.
DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
#: The variable holding a TF2 checkpoint's object graph (a string, not a weight).
_OBJECT_GRAPH = b"_CHECKPOINTABLE_OBJECT_GRAPH"
_TABLE_MAGIC = 0xDB4775248B80FB57
_TASKS = {"tensorflow/serving/classify": "classifier", "tensorflow/serving/regress": "regressor"}


@dataclass
class Signature:
    name: str
    method: str = ""
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)


def savedmodel_folder(path: Path) -> Path:
    """The SavedModel folder of an artifact path: the folder itself or its saved_model.pb."""
    return path if path.is_dir() else path.parent


def inspect_savedmodel(path: Path) -> ArtifactInfo:
    """A SavedModel (its folder or its saved_model.pb): the serving signature and the weights."""
    folder = savedmodel_folder(path)
    graph = folder / "saved_model.pb"
    signatures, tags = read_signatures(graph)
    chosen = pick_signature(signatures)
    files = [p for p in folder.rglob("*") if p.is_file()]
    info = ArtifactInfo(
        graph,
        "tensorflow",
        container="savedmodel",
        size_bytes=sum(p.stat().st_size for p in files),
        weight_bytes=sum(p.stat().st_size for p in files if p.name.startswith("variables.data")),
        details={"signatures": ", ".join(sorted(signatures)), "tags": ", ".join(tags)},
    )
    if chosen is not None:
        info.inputs, info.outputs = chosen.inputs, chosen.outputs
        info.task = _TASKS.get(chosen.method, "unknown")
        info.details["signature"] = chosen.name
        tensors = chosen.inputs + chosen.outputs
        info.dynamic_batch = bool(tensors) and all(t.dims and t.dims[0] == -1 for t in tensors)
    index = folder / "variables" / "variables.index"
    if index.is_file():
        _read_variables(info, index.read_bytes())
    return info


def pick_signature(signatures: dict[str, Signature], name: str = "") -> Signature | None:
    """The signature named, else `serving_default`, else the only one (None: none)."""
    if name:
        return signatures.get(name)
    if DEFAULT_SIGNATURE in signatures:
        return signatures[DEFAULT_SIGNATURE]
    return next(iter(signatures.values())) if len(signatures) == 1 else None


def read_signatures(graph: Path, tag: str = SERVE_TAG) -> tuple[dict[str, Signature], list[str]]:
    """The signatures of the meta graph tagged `tag` (else the first) and that graph's tags;
    TF's own entries (`__saved_model_init_op`) left out."""
    with graph.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            metas = [v for n, v in fields(buf, (0, len(buf))) if n == 2 and isinstance(v, tuple)]
            if not metas:
                raise InvalidArgument(f"{graph} holds no meta graph")
            found = [_meta_graph(buf, span) for span in metas]
        except (IndexError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"{graph} is not a readable SavedModel: {exc}") from exc
    signatures, tags = next((m for m in found if tag in m[1]), found[0])
    return {k: v for k, v in signatures.items() if not k.startswith("__")}, tags


def _meta_graph(buf: Buffer, span: Span) -> tuple[dict[str, Signature], list[str]]:
    signatures: dict[str, Signature] = {}
    tags: list[str] = []
    for number, value in fields(buf, span):
        if number == 1 and isinstance(value, tuple):
            tags += [text(buf, v) for n, v in fields(buf, value) if n == 4 and isinstance(v, tuple)]
        elif number == 5 and isinstance(value, tuple):
            key, body = _map_entry(buf, value)
            signatures[key] = _signature(buf, key, body)
    return signatures, tags


def _signature(buf: Buffer, name: str, span: Span | None) -> Signature:
    signature = Signature(name)
    for number, value in fields(buf, span or (0, 0)):
        if number in (1, 2) and isinstance(value, tuple):
            key, body = _map_entry(buf, value)
            tensors = signature.inputs if number == 1 else signature.outputs
            tensors.append(_tensor_info(buf, key, body))
        elif number == 3 and isinstance(value, tuple):
            signature.method = text(buf, value)
    signature.inputs.sort(key=lambda t: t.name)
    signature.outputs.sort(key=lambda t: t.name)
    return signature


def _tensor_info(buf: Buffer, name: str, span: Span | None) -> TensorSpec:
    dtype, dims = 1, [-1]
    for number, value in fields(buf, span or (0, 0)):
        if number == 2 and isinstance(value, int):
            dtype = value
        elif number == 3 and isinstance(value, tuple):
            dims = shape(buf, value)
    return TensorSpec(name, TF_DTYPES.get(dtype, ("FP32", 4))[0], dims)


def shape(buf: Buffer, span: Span) -> list[int]:
    """A TensorShapeProto's dims, -1 for unknown ones ([-1] for an unknown rank)."""
    dims: list[int] = []
    for number, value in fields(buf, span):
        if number == 2 and isinstance(value, tuple):
            size = next((v for n, v in fields(buf, value) if n == 1 and isinstance(v, int)), 0)
            dims.append(max(signed(size), -1))
        elif number == 3 and value:
            return [-1]
    return dims


def _map_entry(buf: Buffer, span: Span) -> tuple[str, Span | None]:
    key, body = "", None
    for number, value in fields(buf, span):
        if number == 1 and isinstance(value, tuple):
            key = text(buf, value)
        elif number == 2 and isinstance(value, tuple):
            body = value
    return key, body


# ---- the checkpoint's index (variables/variables.index) ------------------------------------


def _read_variables(info: ArtifactInfo, index: bytes) -> None:
    """Parameters, weight bytes and the dominant dtype from the variables' index (the data
    files' sizes stay the weight bytes when the index does not read). A tensor saved under two
    names with the same contents (Keras 3's export tracks each variable twice) is one tensor's
    parameters, but both copies are restored, so both count as weight bytes."""
    dtypes: Counter[str] = Counter()
    seen: set[tuple[str, int, int, int]] = set()
    params = nbytes = 0
    try:
        for key, span in table_entries(index):
            if not key or key == _OBJECT_GRAPH or b"OPTIMIZER_SLOT" in key:
                continue
            entry = _bundle_entry(index, span)
            datatype, count, size, _ = entry
            if datatype == "BYTES":
                continue
            nbytes += size
            if entry not in seen:
                seen.add(entry)
                dtypes[datatype] += count
                params += count
    except (IndexError, InvalidArgument):
        return
    info.parameters, info.weight_bytes = params, nbytes
    info.quantization = dtypes.most_common(1)[0][0] if dtypes else None


def _bundle_entry(buf: bytes, span: Span) -> tuple[str, int, int, int]:
    """(datatype, elements, bytes, CRC32C of the bytes) of one BundleEntryProto."""
    dtype, dims, size, crc = 1, [], 0, 0
    for number, value in fields(buf, span):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2 and isinstance(value, tuple):
            dims = shape(buf, value)
        elif number == 5 and isinstance(value, int):
            size = value
        elif number == 6 and isinstance(value, int):
            crc = value
    count = 1
    for dim in dims:
        count *= max(dim, 0)
    return TF_DTYPES.get(dtype, ("FP32", 4))[0], count, size, crc


def table_entries(table: bytes) -> Iterator[tuple[bytes, Span]]:
    """(key, value span) of every record of a LevelDB-format table (TensorFlow's checkpoint
    index): the footer's index block names each data block."""
    footer = len(table) - 48
    if footer < 0 or int.from_bytes(table[-8:], "little") != _TABLE_MAGIC:
        raise InvalidArgument("not a TensorFlow table (no table magic)")
    _, pos = varint(table, footer)  # the metaindex block: offset, size
    _, pos = varint(table, pos)
    offset, pos = varint(table, pos)
    size, _ = varint(table, pos)
    for _, handle in _block(table, offset, size):
        data_offset, pos = varint(table, handle[0])
        data_size, _ = varint(table, pos)
        yield from _block(table, data_offset, data_size)


def _block(table: bytes, offset: int, size: int) -> Iterator[tuple[bytes, Span]]:
    """A block's records: keys share prefixes with the record before (restart points ignored,
    the block is read from its start); a 5-byte trailer follows it (compression type, CRC)."""
    if table[offset + size] != 0:
        raise InvalidArgument("a compressed table block")
    restarts = int.from_bytes(table[offset + size - 4 : offset + size], "little")
    end, pos, key = offset + size - 4 - 4 * restarts, offset, b""
    while pos < end:
        shared, pos = varint(table, pos)
        unshared, pos = varint(table, pos)
        length, pos = varint(table, pos)
        key = key[:shared] + table[pos : pos + unshared]
        pos += unshared
        yield key, (pos, pos + length)
        pos += length
