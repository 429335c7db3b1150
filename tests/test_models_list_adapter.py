"""`shopsight models list` names the LoRA adapter in use and how to go back to the packaged weights."""

from __future__ import annotations

from assistant.cli import main


def test_models_list_names_the_adapter_in_use_and_the_way_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    monkeypatch.delenv("SHOPSIGHT_ADAPTER", raising=False)
    assert main(["models", "list"]) == 0
    plain = capsys.readouterr().out
    assert "in use: " in plain and "adapter" not in plain.split("in use: ")[1].split(" on the ")[0]
    adapter = tmp_path / "lora_shop" / "final"
    monkeypatch.setenv("SHOPSIGHT_ADAPTER", str(adapter))
    assert main(["models", "list"]) == 0
    assert (f"with the LoRA adapter {adapter} (SHOPSIGHT_ADAPTER; unset it to go back to the packaged weights)"
            in capsys.readouterr().out)
