"""Inventory decisions: does a bin's photo agree with its recorded quantity?

policy.py   the decision for one record (accept / review / mismatch) under a `DecisionPolicy`
fit.py      simulated records on labelled data: a policy's error rates, and fitting one to targets
records.py  `bintally reconcile`: a file of records in, a decisions CSV out, audits
audit.py    which decided records to recount, and the realised error rates' bounds beside the promise
prior.py    a batch's count distribution estimated from its photos' probabilities (EM), and adjusting to it
"""
