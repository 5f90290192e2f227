"""The KServe v2 gRPC service for Ray Serve's gRPC proxy: the servicer function Ray is given,
and the service's messages made picklable.

tritonclient's generated messages name their modules `grpc_service_pb2` and
`model_config_pb2` (protoc's names for their files), which import nowhere, and pickle finds a
class by its module: Ray's gRPC proxy pickles each request it sends to the ingress, and a
handle pickles its arguments between deployments. So those names are made to import in every
process that imports this module: Ray's proxy, which imports it for `add_servicer`, and the
ingress and the model replicas (through `modelyard.ray.app`). Given tritonclient's own
`add_GRPCInferenceServiceServicer_to_server` instead, Ray's proxy cannot pickle a request.
"""

from __future__ import annotations

import sys
from typing import Any

from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

#: What to give Ray: `gRPCOptions(grpc_servicer_functions=[SERVICER_FUNCTION])`.
SERVICER_FUNCTION = "modelyard.ray.grpc_service.add_servicer"

sys.modules.setdefault("grpc_service_pb2", service_pb2)
sys.modules.setdefault("model_config_pb2", model_config_pb2)


def add_servicer(servicer: Any, server: Any) -> None:
    """Add `inference.GRPCInferenceService` (tritonclient's) to Ray's gRPC server."""
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
