"""Everything the assistant can call, and the engines behind it (never imports `assistant`)."""
