"""persistence_svc: stores quiz participants and answers from Kafka events and serves them over gRPC."""
