"""The WebSocket edge: client JSON in, gRPC calls out, leaderboard and quiz-state fan-out back."""
