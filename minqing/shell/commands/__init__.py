"""The shell's own `minqing` commands, by area; `minqing.shell.cli` puts them and the services' together."""
