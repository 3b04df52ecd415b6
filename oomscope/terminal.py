"""Text from the kernel on a terminal: process and cgroup names are chosen by whoever runs the
workload, so no control bytes reach a tty."""


def terminal_safe(text: str) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
