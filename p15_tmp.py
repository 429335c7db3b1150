import sys, json
sys.path.insert(0, "tests")
import pytest
from test_catalog import _frames, _scores, CUTOFF
from tools.data.store import EventStore
from tools.catalog import ToolContext, build_tools
s = EventStore("/tmp/p15-t.duckdb"); s.import_frames("test", **_frames()); s.replace_scores(_scores())
ctx = ToolContext(store=s, cutoff=CUTOFF, audit_path="/tmp/p15-a.jsonl")
f = {x.__name__: x for x in build_tools(ctx)}
print(json.dumps(f["at_risk_users"](horizon_days=7, top_k=8), indent=1)[:3000])
print(json.dumps(f["segment_report"](segment_by="segment", horizon_days=7), indent=1)[:1500])
