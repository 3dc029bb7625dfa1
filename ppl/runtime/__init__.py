"""The program runtime, below every method: compiled programs and their caches
(`program`), the chunk loop (`chunks`), Ctrl-C (`interrupt`), checkpoints (`checkpoint`),
where draws go (`store`), progress bars (`progress`) and chains laid out over devices and
processes (`distributed`)."""
