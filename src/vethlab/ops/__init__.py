"""Operations on a lab that exists (built by `up`), one module each:

down            remove one lab: its state, then its kernel objects by their markers
clean           remove labs whose run died (state or markers left, nobody working on them)
faults          change a running lab on purpose: link up/down, flap, isolate, chaos, shaping
watch           its link and address changes as they happen
inspect         what it looks like now: the one reader of its interfaces (status, ping, perf)
perf            TCP throughput between two of its nodes
doctor          the host's preflight (kernel features, tools), for a file before `up`

They use the kernel through `kernel.open_kernel()` and the reconcile layer's removal
order; none imports lab.py (the facade is a front, above them).
"""
