"""Server reflection under both of its names: grpc.reflection.v1, and the older v1alpha.

grpcio-reflection serves only grpc.reflection.v1alpha (1.85; grpc/grpc#38576), while current tools
ask for grpc.reflection.v1 first. The two are the same protocol: v1 is v1alpha's messages and
service under another package, field for field. So one servicer answers both, v1 requests being read
and answered with the v1alpha message classes, and the v1 file's descriptor (v1alpha's, renamed) is
put in the default descriptor pool, so a v1 client can describe the service it is talking to.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
_V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"  # its name in grpc-proto, as other servers register it


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, made from the v1alpha file it copies."""
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    v1alpha = file.package
    file.name, file.package = _V1_FILE_NAME, V1_PACKAGE
    file.options.Clear()  # v1alpha's are marked deprecated and name v1alpha's Go and Java packages
    for message in file.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(f".{v1alpha}.", f".{V1_PACKAGE}.")
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{v1alpha}.", f".{V1_PACKAGE}.")
            method.output_type = method.output_type.replace(f".{v1alpha}.", f".{V1_PACKAGE}.")
    return file


def describe_v1(pool: descriptor_pool.DescriptorPool) -> None:
    """Puts the v1 file in `pool`, unless a file there (another library's copy) already defines it."""
    try:
        pool.FindServiceByName(V1_SERVICE_NAME)  # already there: another library defined it
    except KeyError:
        pool.AddSerializedFile(v1_file().SerializeToString())


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serves reflection of `service_names` and of itself, as v1 and as v1alpha."""
    describe_v1(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer([*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
