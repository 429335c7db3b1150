"""The analyst loop: question -> tool calls -> grounded answer, as events; the router, tool
specs, grounding, the answer composer and session memory."""
