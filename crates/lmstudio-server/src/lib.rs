//! The server: LM Studio SDK websocket protocol, OpenAI-compatible and REST endpoints (issue 4).
