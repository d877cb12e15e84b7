"""Trial backends: `local` (HF generate + torch, CPU default) and, later, `verl`."""
