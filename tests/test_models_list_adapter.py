"""Which weights answer: `shopsight models list` names the LoRA adapter in use and the way back; a forwarded ask says
that a local SHOPSIGHT_ADAPTER does not reach a running workspace."""

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


def test_a_question_forwarded_to_a_running_workspace_says_a_local_adapter_does_not_reach_it():
    from assistant.commands.ask import forwarded_note

    url = "http://127.0.0.1:7860"
    assert forwarded_note(url, "") == (f"note: the running workspace at {url} holds the event store; asking it "
                                       "there (it answers with the model and adapter it was started with)")
    assert "SHOPSIGHT_ADAPTER=out/lora_shop/final set here does not reach it: stop it and start `shopsight app`" \
        in forwarded_note(url, "out/lora_shop/final")
