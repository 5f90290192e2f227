"""A small HTTP/2 server stack for the gRPC front: HPACK and connections."""
