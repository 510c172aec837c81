"""Pure decisions: demand rates, scaling, zone split, TPS budget, status phase, billing.

No I/O and no clock: every function takes the time it needs as an argument.
"""
