"""The scenario families of the fault campaign, one module each; a new family (a full
disk, an office program's save sequence, a damaged journal) is one more module here and
one line in ``tests.faults.campaign.all_scenarios``."""
