"""Speed and memory harness behind ``proseg-pyro bench``.

Each case is measured side by side with its baseline in one run (interleaved repeats, medians),
so the ratios stay meaningful on a busy machine even where the absolute numbers do not.
"""
