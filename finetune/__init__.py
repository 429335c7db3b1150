"""Scripts ML engineers run: `python -m finetune.<name> --config finetune/configs/<recipe>.yaml`."""
