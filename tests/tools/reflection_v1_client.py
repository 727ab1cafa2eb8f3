"""A grpc.reflection.v1 client, run as its own process: `python reflection_v1_client.py HOST:PORT`.

It speaks only v1, through grpclib's stubs (generated from grpc-proto's v1 file, an implementation
independent of grpcio's), the way current tools do: list the services, fetch the file defining each,
build a descriptor pool from those files alone, and call a method with messages made from them. It
prints what it learnt as JSON. It runs in a process of its own because importing grpclib's v1 stubs
defines grpc.reflection.v1 in the default descriptor pool, which a server in the same process reads.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.reflection.v1 import reflection_pb2
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub


def _shape(file: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    """A file's messages and services without its name, options and comments."""
    return {
        "package": file.package,
        "messages": [json_format.MessageToDict(m) for m in file.message_type],
        "services": [json_format.MessageToDict(s) for s in file.service],
    }


async def explore(host: str, port: int) -> dict[str, Any]:
    async with Channel(host, port) as channel:
        async with ServerReflectionStub(channel).ServerReflectionInfo.open() as stream:

            async def ask(request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
                await stream.send_message(request)
                reply = await stream.recv_message()
                assert reply is not None
                return reply

            listed = await ask(reflection_pb2.ServerReflectionRequest(list_services=""))
            services = sorted(s.name for s in listed.list_services_response.service)
            files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
            for service in services:
                found = await ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=service))
                for raw in found.file_descriptor_response.file_descriptor_proto:
                    file = descriptor_pb2.FileDescriptorProto.FromString(raw)
                    files[file.name] = file
            await stream.end()
        pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        while len(added) < len(files):  # a file goes in after the files it imports
            for file in files.values():
                if file.name not in added and set(file.dependency) <= added:
                    pool.AddSerializedFile(file.SerializeToString())
                    added.add(file.name)
        methods = {s: [m.name for m in pool.FindServiceByName(s).methods] for s in services}
        quizzes = None
        if "quizmesh.quiz.v1.QuizService" in services:
            method = pool.FindMethodByName("quizmesh.quiz.v1.QuizService.ListQuizzes")
            request_type = message_factory.GetMessageClass(method.input_type)
            reply_type = message_factory.GetMessageClass(method.output_type)
            call = UnaryUnaryMethod(channel, "/quizmesh.quiz.v1.QuizService/ListQuizzes", request_type, reply_type)
            request = request_type()
            json_format.ParseDict({"page_size": 1000}, request)
            reply = await call(request, timeout=10)
            quizzes = json_format.MessageToDict(reply, preserving_proto_field_name=True).get("quizzes", [])
    v1 = next(f for f in files.values() if f.package == "grpc.reflection.v1")
    upstream = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(upstream)
    return {
        "services": services,
        "methods": methods,
        "v1_file_matches_grpc_proto": _shape(v1) == _shape(upstream),
        "quizzes": quizzes,
    }


if __name__ == "__main__":
    host, port = sys.argv[1].rsplit(":", 1)
    print(json.dumps(asyncio.run(explore(host, int(port)))))
