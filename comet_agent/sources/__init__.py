"""The only modules that touch the operating system or a system library (/proc, NVML, git, commands)."""
