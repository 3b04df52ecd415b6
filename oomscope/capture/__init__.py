"""Capture assembly, shared by record and import: a kill's parts in, a Capture out (assemble.py,
place.py, inputs.py), the kills of a memory.oom.group linked as one incident
(groups.py), and the capture written to its kill folder (writer.py)."""
