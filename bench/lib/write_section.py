#!/usr/bin/env python3
"""Replaces (or appends) one benchmark's section of BENCHMARKS.md.

usage: write_section.py NAME FILE < SECTION
The section on stdin must start with <!-- NAME:begin ... --> and end with
<!-- NAME:end -->, so that the next run finds and replaces it.
"""
import re
import sys

name, path = sys.argv[1], sys.argv[2]
section = sys.stdin.read().strip("\n")
try:
    text = open(path).read()
except FileNotFoundError:
    text = ("# Benchmarks\n\nFigures are ratios to a baseline measured in the same run, because these machines are "
            "noisy.\nEach section names the command that wrote it.\n")
pattern = re.compile(r"<!-- %s:begin.*?<!-- %s:end -->" % (re.escape(name), re.escape(name)), re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
